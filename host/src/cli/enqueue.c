/* enqueue.c -- workerhost enqueue CLASS [ARGS_JSON] [--queue Q] [--in S | --at EPOCH] [--retry N|false] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/host.h"
#include "cli/cli.h"

static const char *const help =
    "usage: workerhost enqueue CLASS [ARGS_JSON] [--queue Q] [--in SECONDS | --at EPOCH] [--retry N|false]\n"
    "\n"
    "ARGS_JSON is what perform receives as args: a JSON object for a worker with named\n"
    "fields ('{\"user_guid\":\"foo\"}'), a JSON array for a positional one; default {}.\n"
    "The arguments are checked against the worker's schema first; a refused job is not queued.\n"
    "\n"
    "ForegroundBlocking: performs the job in this command and exits with its outcome.\n"
    "\n"
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
    if (cli->help) { fputs(help, stdout); return 0; }
    const char *cls = NULL, *args = NULL;
    wh_enqueue_options o = WH_ENQUEUE_OPTIONS_INIT;
    for (int i = 1; i < cli->nwords; i++) {
        const char *w = cli->words[i];
        const char *val = (i + 1 < cli->nwords) ? cli->words[i + 1] : NULL;
        if (strcmp(w, "--queue") == 0 || strcmp(w, "--in") == 0 || strcmp(w, "--at") == 0 ||
            strcmp(w, "--retry") == 0) {
            if (val == NULL) return wh_cli_usage_error("enqueue", "%s needs a value", w);
            i++;
            if (strcmp(w, "--queue") == 0) {
                if (*val == '\0') return wh_cli_usage_error("enqueue", "--queue must not be empty%s", "");
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
    if (cls == NULL) return wh_cli_usage_error("enqueue", "missing CLASS%s", "");
    if (o.in > 0 && o.at > 0) return wh_cli_usage_error("enqueue", "give either --in or --at, not both%s", "");
    if (args == NULL) args = "{}";

    wh_host *h;
    int rc = wh_cli_open_host(cli, NULL, &h);
    if (rc) return rc;
    wh_err err = WH_ERR_INIT;
    char jid[WH_JID_SIZE];
    rc = wh_host_enqueue(h, cls, args, strlen(args), &o, jid, &err);
    if (rc == 0) {
        printf("%s\n", jid);
    } else {
        fprintf(stderr, "workerhost: %s\n", err.msg);
        if (rc == WH_EJOB && jid[0]) printf("%s\n", jid);
    }
    wh_host_free(h);
    return wh_cli_exit_status(rc);
}
