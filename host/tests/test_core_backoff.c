/* test_core_backoff.c -- core/backoff (delays and log intervals of a
 * failure that repeats) and core/sigpipe (a write to a closed socket is
 * EPIPE, and the guard leaves the thread as it found it). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include "core/backoff.h"
#include "core/sigpipe.h"
#include "test.h"

static void test_delays_double_to_the_cap(void) {
    wh_backoff b = WH_BACKOFF_INIT(0.1, 1.0, 10.0);
    ASSERT(wh_backoff_ready(&b, 0));
    double now = 100;
    const double want[] = {0.1, 0.2, 0.4, 0.8, 1.0, 1.0};
    for (int i = 0; i < 6; i++) {
        wh_backoff_fail(&b, now, NULL);
        ASSERT_EQ_DBL(b.delay_s, want[i]);
        ASSERT(!wh_backoff_ready(&b, now + want[i] / 2));
        ASSERT(fabs(wh_backoff_wait(&b, now) - want[i]) < 1e-9);
        now += want[i];
        ASSERT(wh_backoff_ready(&b, now));
    }
    ASSERT_EQ_INT(wh_backoff_ok(&b), 6);
    ASSERT(wh_backoff_ready(&b, now));
    wh_backoff_fail(&b, now, NULL);
    ASSERT_EQ_DBL(b.delay_s, 0.1); /* a success starts over */
    ASSERT_EQ_INT(wh_backoff_ok(&b), 1);
    ASSERT_EQ_INT(wh_backoff_ok(&b), 0);
}

static void test_logged_once_per_interval_with_a_count(void) {
    wh_backoff b = WH_BACKOFF_INIT(0.1, 5.0, 10.0);
    unsigned long rep = 99;
    ASSERT(wh_backoff_fail(&b, 0, &rep)); /* the first is logged */
    ASSERT_EQ_INT(rep, 0);
    int logged = 0;
    for (int i = 1; i <= 100; i++) /* 100 more within 9.9 s: none logged */
        logged += wh_backoff_fail(&b, i * 0.099, NULL);
    ASSERT_EQ_INT(logged, 0);
    ASSERT(wh_backoff_fail(&b, 10.0, &rep)); /* the interval has passed */
    ASSERT_EQ_INT(rep, 100);
    ASSERT(!wh_backoff_fail(&b, 12.0, &rep));
    ASSERT(wh_backoff_fail(&b, 20.5, &rep));
    ASSERT_EQ_INT(rep, 1);
    wh_backoff every = WH_BACKOFF_INIT(0.1, 5.0, 0);
    for (int i = 0; i < 5; i++) ASSERT(wh_backoff_fail(&every, i * 0.01, NULL));
}

static int pipe_pending(void) {
    sigset_t p;
    sigpending(&p);
    return sigismember(&p, SIGPIPE);
}

static void *write_to_closed(void *arg) {
    int *out = arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return NULL;
    close(sv[1]);
    wh_sigpipe_guard g;
    wh_sigpipe_enter(&g);
    errno = 0;
    ssize_t n = write(sv[0], "x", 1);
    out[0] = n < 0 && errno == EPIPE;
    wh_sigpipe_leave(&g);
    out[1] = pipe_pending();
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    out[2] = sigismember(&mask, SIGPIPE);
    close(sv[0]);
    return NULL;
}

/* SIGPIPE keeps its default action (death) in this process: a write inside
 * the guard must still be EPIPE, with nothing left pending and the mask as
 * it was. Run on a fresh thread, as on an embedder's. */
static void test_guard_turns_sigpipe_into_epipe(void) {
    signal(SIGPIPE, SIG_DFL);
    int out[3] = {0, 1, 1};
    pthread_t t;
    ASSERT_EQ_INT(pthread_create(&t, NULL, write_to_closed, out), 0);
    pthread_join(t, NULL);
    ASSERT_EQ_INT(out[0], 1); /* EPIPE, and the process is alive */
    ASSERT_EQ_INT(out[1], 0); /* the SIGPIPE it raised was taken */
    ASSERT_EQ_INT(out[2], 0); /* SIGPIPE is not blocked after the guard */
}

static void *blocked_thread(void *arg) {
    int *out = arg;
    wh_sigpipe_block_thread();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return NULL;
    close(sv[1]);
    errno = 0;
    out[0] = write(sv[0], "x", 1) < 0 && errno == EPIPE;
    close(sv[0]);
    return NULL;
}

static void test_blocked_thread_gets_epipe(void) {
    signal(SIGPIPE, SIG_DFL);
    int out[1] = {0};
    pthread_t t;
    ASSERT_EQ_INT(pthread_create(&t, NULL, blocked_thread, out), 0);
    pthread_join(t, NULL);
    ASSERT_EQ_INT(out[0], 1);
}

int main(void) {
    alarm(60);
    RUN(test_delays_double_to_the_cap);
    RUN(test_logged_once_per_interval_with_a_count);
    RUN(test_guard_turns_sigpipe_into_epipe);
    RUN(test_blocked_thread_gets_epipe);
    return TEST_REPORT();
}
