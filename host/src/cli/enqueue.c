/* enqueue.c -- workerhost enqueue CLASS [ARGS_JSON] [--queue Q] [--in S | --at EPOCH] [--retry N|false] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include "app/host.h"
#include "cli/cli.h"
#include "cli/queue_cmds.h"
#include "core/mem.h"

/* First-attempt outcomes of every job the in-process host ran, so the
 * command can report its own job's (which may finish before the jid is
 * known here). */
typedef struct outcome {
    char jid[WH_JID_SIZE];
    int rc;
    char *msg;
    struct outcome *next;
} outcome;

typedef struct outcomes {
    pthread_mutex_t lock;
    outcome *head;
} outcomes;

static void observe(void *ud, const wh_job *job, const wh_run_result *res) {
    outcomes *o = ud;
    if (job->first_attempt_done) return;
    outcome *e = wh_xcalloc(1, sizeof *e);
    memcpy(e->jid, job->jid, WH_JID_SIZE);
    e->rc = res->rc;
    e->msg = wh_xstrdup(res->err.msg);
    pthread_mutex_lock(&o->lock);
    e->next = o->head;
    o->head = e;
    pthread_mutex_unlock(&o->lock);
}

static const char *const help =
    "usage: workerhost enqueue CLASS [ARGS_JSON] [--queue Q] [--in SECONDS | --at EPOCH] [--retry N|false]\n"
    "                          [--wait SECONDS] [--bulk FILE] [--unchecked]\n"
    "\n"
    "ARGS_JSON is what perform receives as args: a JSON object for a worker with named\n"
    "fields ('{\"user_guid\":\"foo\"}'), a JSON array for a positional one; default {}.\n"
    "The arguments are checked against the worker's schema first; a refused job is not queued.\n"
    "\n"
    "ForegroundBlocking: performs the job in this command and exits with its outcome.\n"
    "BackgroundAsync: starts an in-process host, performs the job and every job it enqueues,\n"
    "waits until none is queued or running (and for scheduled jobs and retries due within\n"
    "--wait SECONDS, default 0), and exits with the outcome of the job's first attempt.\n"
    "\n"
    "%s"
    "exit status: 0 success, 1 the job failed, 2 usage or configuration error,\n"
    "3 arguments refused, 4 unknown class, 5 backend unavailable or queue full\n";

static int parse_seconds(const char *s, double *out) {
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(d) || d < 0) return -1;
    *out = d;
    return 0;
}

int wh_cli_enqueue(const wh_cli *cli) {
    if (cli->help) { printf(help, wh_cli_enqueue_redis_help); return 0; }
    const char *cls = NULL, *args = NULL;
    wh_enqueue_options o = WH_ENQUEUE_OPTIONS_INIT;
    double wait = 0;
    const char *bulk = NULL;
    bool unchecked = false;
    for (int i = 1; i < cli->nwords; i++) {
        const char *w = cli->words[i];
        const char *val = (i + 1 < cli->nwords) ? cli->words[i + 1] : NULL;
        if (strcmp(w, "--unchecked") == 0) {
            unchecked = true;
        } else if (strcmp(w, "--bulk") == 0) {
            if (val == NULL) return wh_cli_usage_error("enqueue", "--bulk needs a FILE (- for stdin)");
            bulk = val;
            i++;
        } else if (strcmp(w, "--wait") == 0) {
            if (val == NULL || parse_seconds(val, &wait))
                return wh_cli_usage_error("enqueue", "--wait needs seconds >= 0, not %s", val ? val : "nothing");
            i++;
        } else if (strcmp(w, "--queue") == 0 || strcmp(w, "--in") == 0 || strcmp(w, "--at") == 0 ||
            strcmp(w, "--retry") == 0) {
            if (val == NULL) return wh_cli_usage_error("enqueue", "%s needs a value", w);
            i++;
            if (strcmp(w, "--queue") == 0) {
                if (*val == '\0') return wh_cli_usage_error("enqueue", "--queue must not be empty");
                o.queue = val;
            } else if (strcmp(w, "--in") == 0) {
                if (parse_seconds(val, &o.in)) return wh_cli_usage_error("enqueue", "--in needs seconds >= 0, not %s", val);
            } else if (strcmp(w, "--at") == 0) {
                if (parse_seconds(val, &o.at) || o.at == 0)
                    return wh_cli_usage_error("enqueue", "--at needs epoch seconds, not %s", val);
            } else if (strcmp(val, "false") == 0) {
                o.retry = WH_RETRY_FALSE;
            } else {
                char *end;
                long n = strtol(val, &end, 10);
                if (*val == '\0' || *end != '\0' || n < 0 || n > 1000000)
                    return wh_cli_usage_error("enqueue", "--retry needs a count >= 0 or false, not %s", val);
                o.retry = (int)n;
            }
        } else if (strncmp(w, "--", 2) == 0 && w[2] != '\0') {
            return wh_cli_usage_error("enqueue", "unknown option %s", w);
        } else if (cls == NULL) {
            cls = w;
        } else if (args == NULL) {
            args = w;
        } else {
            return wh_cli_usage_error("enqueue", "unexpected argument %s", w);
        }
    }
    if (cls == NULL) return wh_cli_usage_error("enqueue", "missing CLASS");
    if (o.in > 0 && o.at > 0) return wh_cli_usage_error("enqueue", "give either --in or --at, not both");
    if (bulk && args) return wh_cli_usage_error("enqueue", "--bulk FILE replaces ARGS_JSON (got %s)", args);
    const char *args_given = args;
    if (args == NULL) args = "{}";

    wh_host *h;
    int rc = wh_cli_open_host(cli, NULL, &h);
    if (rc) return rc;
    if (bulk || unchecked || wh_host_config(h)->mode == WH_MODE_BACKGROUND_QUEUE) {
        if (bulk) rc = unchecked ? wh_cli_enqueue_bulk_unchecked_redis(cli, h, cls, bulk, &o)
                                 : wh_cli_enqueue_bulk_redis(cli, h, cls, bulk, &o);
        else rc = unchecked ? wh_cli_enqueue_unchecked_redis(cli, h, cls, args_given, &o)
                            : wh_cli_enqueue_redis(cli, h, cls, args_given, &o);
        wh_host_free(h);
        return rc;
    }
    wh_err err = WH_ERR_INIT;
    char jid[WH_JID_SIZE];
    outcomes seen = {PTHREAD_MUTEX_INITIALIZER, NULL};
    bool in_process = wh_host_config(h)->mode == WH_MODE_BACKGROUND_ASYNC;
    if (in_process) {
        /* signals keep their default action: Ctrl-C ends the command (and the
         * jobs it holds in memory, as the help says) */
        wh_host_set_observer(h, observe, &seen);
        rc = wh_host_start(h, &err);
        if (rc) {
            fprintf(stderr, "workerhost: %s\n", err.msg);
            wh_host_free(h);
            return wh_cli_exit_status(rc);
        }
    }
    rc = wh_host_enqueue(h, cls, args, strlen(args), &o, jid, &err);
    if (rc == 0 && in_process) {
        wh_host_wait_idle(h, wait, NULL);
        wh_host_stop(h, -1, NULL);
        rc = WH_EJOB;
        snprintf(err.msg, sizeof err.msg, "the job did not run within --wait %g s (scheduled for later)", wait);
        for (outcome *e = seen.head; e; e = e->next) {
            if (strcmp(e->jid, jid) != 0) continue;
            rc = e->rc == 0 ? 0 : (e->rc == WH_EARGS || e->rc == WH_ENOCLASS ? e->rc : WH_EJOB);
            snprintf(err.msg, sizeof err.msg, "%s", e->msg);
        }
    }
    while (seen.head) {
        outcome *e = seen.head;
        seen.head = e->next;
        wh_free(e->msg);
        wh_free(e);
    }
    if (rc == 0) {
        printf("%s\n", jid);
    } else {
        fprintf(stderr, "workerhost: %s\n", err.msg);
        if (rc == WH_EJOB && jid[0]) printf("%s\n", jid);
    }
    wh_host_free(h);
    return wh_cli_exit_status(rc);
}
