/* backoff.c -- see backoff.h. */
#include "core/backoff.h"

bool wh_backoff_ready(const wh_backoff *b, double now) { return now >= b->next_at; }

double wh_backoff_wait(const wh_backoff *b, double now) { return b->next_at > now ? b->next_at - now : 0; }

bool wh_backoff_fail(wh_backoff *b, double now, unsigned long *repeated) {
    b->delay_s = b->delay_s <= 0 ? b->min_s : b->delay_s * 2;
    if (b->delay_s > b->max_s) b->delay_s = b->max_s;
    b->next_at = now + b->delay_s;
    b->failures++;
    bool log = b->failures == 1 || b->log_every_s <= 0 || now - b->logged_at >= b->log_every_s;
    if (!log) {
        b->unlogged++;
        return false;
    }
    if (repeated) *repeated = b->unlogged;
    b->unlogged = 0;
    b->logged_at = now;
    return true;
}

unsigned long wh_backoff_ok(wh_backoff *b) {
    unsigned long n = b->failures;
    b->delay_s = 0;
    b->next_at = 0;
    b->failures = 0;
    b->unlogged = 0;
    return n;
}
