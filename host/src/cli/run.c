/* run.c -- workerhost run: the host until SIGINT/SIGTERM.
 *
 * Signals are blocked in every thread and taken synchronously here with
 * sigwait, so no handler runs inside a worker thread or a Lua call:
 *   SIGINT, SIGTERM  stop: no new jobs, running ones get workers.shutdown_timeout
 *   a second SIGINT  stop at once (the jobs held in memory are abandoned)
 *   SIGTSTP          quiet: no new jobs start, running ones finish
 *   SIGHUP           reload the worker scripts and app modules
 *
 * With workers.reload, a change to a .lua file in the scripts folder or
 * under workers.lua_path reloads too (app/watch.c, debounced). Every
 * reload attempt is recorded in tmp/workerhost.reload for `workerhost
 * reload`, which finds this process by tmp/workerhost.pid. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/host.h"
#include "app/watch.h"
#include "cli/cli.h"
#include "cli/pidfile.h"
#include "core/log.h"

typedef struct stopper {
    wh_host *h;
    volatile int done;
} stopper;

static void *stop_thread(void *arg) {
    stopper *s = arg;
    wh_host_stop(s->h, -1, NULL);
    s->done = 1;
    kill(getpid(), SIGUSR1); /* wakes sigwait below */
    return NULL;
}

/* The signals run takes with sigwait (SIGUSR1: the stop thread is done). */
static void host_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGTSTP);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
}

/* Reload attempts from the signal loop (SIGHUP) and the watch thread, one
 * at a time, each recorded in tmp/workerhost.reload. */
typedef struct reloader {
    wh_host *h;
    pthread_mutex_t lock;
    unsigned attempts;
} reloader;

static void reload_now(reloader *r, const char *why) {
    pthread_mutex_lock(&r->lock);
    wh_log(WH_LOG_INFO, NULL, NULL, "reload requested (%s)", why);
    wh_err err = WH_ERR_INIT;
    int rc = wh_host_reload(r->h, &err); /* logs the outcome */
    wh_cli_reload_status(wh_host_config(r->h), ++r->attempts, r->h, rc, err.msg);
    pthread_mutex_unlock(&r->lock);
}

static void on_change(void *ud) { reload_now(ud, "files changed"); }

void wh_cli_block_signals(void) {
    sigset_t set;
    host_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int wh_cli_run_host(wh_host *h) {
    const wh_config *cfg = wh_host_config(h);
    if (cfg->mode == WH_MODE_FOREGROUND_BLOCKING) {
        fprintf(stderr, "workerhost run: workers.mode is ForegroundBlocking in %s: there is nothing to run, "
                        "jobs run when they are enqueued (use BackgroundAsync or BackgroundQueue)\n",
                cfg->file);
        return 2;
    }
    wh_cli_block_signals(); /* before any thread starts, so they all inherit the mask */
    wh_err err = WH_ERR_INIT;
    int rc = wh_host_start(h, &err);
    if (rc) {
        fprintf(stderr, "workerhost run: %s\n", err.msg);
        return wh_cli_exit_status(rc);
    }
    wh_log(WH_LOG_INFO, NULL, NULL, "workerhost %s running: %s mode, %d thread%s, pid %d", WORKERHOST_VERSION,
           wh_mode_name(cfg->mode), cfg->concurrency, cfg->concurrency == 1 ? "" : "s", (int)getpid());
    char *pidfile = wh_pidfile_write(cfg);
    reloader rl = {.h = h, .attempts = 0};
    pthread_mutex_init(&rl.lock, NULL);
    wh_cli_reload_status(cfg, 0, h, 0, NULL);
    wh_watch *watch = NULL;
    if (cfg->reload) {
        const char *flat[] = {cfg->scripts_dir, NULL};
        wh_watch_options wo = {flat, (const char *const *)cfg->lua_path, 0, on_change, &rl};
        if (wh_watch_start(&wo, &watch, &err) != 0)
            wh_log(WH_LOG_WARN, NULL, NULL, "workers.reload: %s; reload with SIGHUP or `workerhost reload`",
                   err.msg);
        else
            wh_log(WH_LOG_INFO, NULL, NULL, "workers.reload: watching %zu folder%s for changes to .lua files",
                   wh_watch_count(watch), wh_watch_count(watch) == 1 ? "" : "s");
    }
    sigset_t set;
    host_signals(&set);
    stopper st = {h, 0};
    pthread_t t;
    bool stopping = false;
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGTSTP) {
            wh_host_quiet(h);
        } else if (sig == SIGHUP) {
            if (!stopping) reload_now(&rl, "SIGHUP");
        } else if (sig == SIGUSR1) {
            if (stopping && st.done) break;
        } else if (!stopping) {
            wh_log(WH_LOG_INFO, NULL, NULL, "%s: stopping (send SIGINT again to stop at once)", strsignal(sig));
            stopping = true;
            wh_watch_stop(watch); /* no reload while stopping */
            watch = NULL;
            pthread_create(&t, NULL, stop_thread, &st);
        } else if (sig == SIGINT) {
            wh_async_stats s;
            wh_async_get_stats(wh_host_async(h), &s);
            wh_log(WH_LOG_WARN, NULL, NULL, "second SIGINT: stopping at once; %zu job%s held in memory abandoned, "
                   "%zu running", s.queued + s.scheduled, s.queued + s.scheduled == 1 ? "" : "s", s.running);
            wh_pidfile_remove(pidfile);
            _exit(130);
        }
    }
    pthread_join(t, NULL);
    wh_watch_stop(watch);
    pthread_mutex_destroy(&rl.lock);
    wh_pidfile_remove(pidfile);
    return 0;
}
