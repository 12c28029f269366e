/* backoff.h -- what to do about a failure that repeats: wait longer before
 * the next try (exponential backoff with a cap), and log it once per
 * interval with a count instead of once per failure.
 *
 * One wh_backoff per operation that can fail over and over (connecting,
 * fetching, recording outcomes, registering, ...). Pure: the caller passes
 * the time (monotonic seconds), so tests need no clock. Not thread-safe: a
 * wh_backoff belongs to the thread that drives its operation. */
#ifndef WH_BACKOFF_H
#define WH_BACKOFF_H

#include <stdbool.h>

typedef struct wh_backoff {
    double min_s, max_s;  /* first delay, and the cap (each failure doubles it) */
    double log_every_s;   /* a repeated failure is logged at most this often */
    /* state: zero-initialised together with the fields above */
    double delay_s;       /* the current delay; 0 after a success */
    double next_at;       /* no try before this time */
    double logged_at;     /* when the last failure was logged */
    unsigned long failures;   /* consecutive failures */
    unsigned long unlogged;   /* failures since the last one logged */
} wh_backoff;

/* A backoff with the given delays; log_every_s 0 logs every failure. */
#define WH_BACKOFF_INIT(min_s, max_s, log_every_s) {(min_s), (max_s), (log_every_s), 0, 0, 0, 0, 0}

/* True when a try is allowed at `now`. */
bool wh_backoff_ready(const wh_backoff *b, double now);

/* Seconds until a try is allowed (0 when it is now). */
double wh_backoff_wait(const wh_backoff *b, double now);

/* Records a failure at `now`: the next try waits the current delay, which
 * doubles up to max_s. Returns true when this failure should be logged, and
 * then sets *repeated (may be NULL) to the number of failures since the last
 * logged one that were not logged (0 for the first). */
bool wh_backoff_fail(wh_backoff *b, double now, unsigned long *repeated);

/* Records a success: the next failure starts from min_s again. Returns the
 * number of consecutive failures it ends (0 if none), so the caller can log
 * "recovered after N failures". */
unsigned long wh_backoff_ok(wh_backoff *b);

#endif
