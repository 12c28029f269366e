/* queue_cmds.c -- `workerhost enqueue` into Redis (single, --bulk,
 * --unchecked) and `workerhost stats`; see queue_cmds.h.
 * SPDX-License-Identifier: MIT */
#include "cli/queue_cmds.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "app/catalog.h"
#include "app/host.h"
#include "app/job.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/clock.h"
#include "core/jid.h"
#include "core/mem.h"
#include "json/json.h"
#include "redis/client.h"
#include "redis/uri.h"

const char wh_cli_enqueue_redis_help[] =
    "BackgroundQueue (Redis at queue.uri): checks the arguments, pushes the job as Sidekiq's client\n"
    "does and prints its jid; exits 5 if Redis cannot be reached within 2 s.\n"
    "  --bulk FILE   FILE (- for stdin) holds JSON lines, each in the shape of ARGS_JSON. Every line\n"
    "                is checked first (a bad one exits 3 naming the line, and nothing is pushed),\n"
    "                then all go in one pipelined push; prints one jid per line.\n"
    "  --unchecked   push a class that no local script defines (a Ruby worker, say). Its arguments\n"
    "                cannot be checked: ARGS_JSON must then be the payload's args array itself\n"
    "                ('[\"a\", 2]'), pushed as given. Retry defaults to true. BackgroundQueue only.\n";

static int fail(int rc, const char *msg) {
    fprintf(stderr, "workerhost: %s\n", msg);
    return wh_cli_exit_status(rc);
}

/* ---- reading the input ---- */

typedef struct line {
    const char *text; /* in the input buffer */
    size_t len;
    size_t number;    /* 1-based line number in the file */
} line;

/* Reads all of FILE ("-" = stdin) into *out. */
static int read_all(const char *file, wh_buf *out, wh_err *err) {
    int e = wh_file_read(file, 0, out);
    if (e) return wh_err_set(err, WH_EIO, "cannot read %s: %s", file, strerror(e));
    return 0;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

/* Splits text into its non-blank lines (owned array, *n entries). */
static line *split_lines(const wh_buf *text, size_t *n) {
    size_t cap = 16, count = 0, number = 0;
    line *lines = wh_xmalloc(cap * sizeof *lines);
    const char *p = wh_buf_cstr(text), *end = p + text->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        number++;
        size_t len = (size_t)(e - p);
        if (len && p[len - 1] == '\r') len--;
        if (!blank(p, len)) {
            if (count == cap) lines = wh_xrealloc(lines, (cap *= 2) * sizeof *lines);
            lines[count++] = (line){p, len, number};
        }
        p = nl ? nl + 1 : end;
    }
    *n = count;
    return lines;
}

/* ---- building jobs ---- */

/* An unchecked job: the payload written here in Sidekiq's shape, args as
 * given (an array), then read back as a parsed job. Takes nothing. */
static wh_job *unchecked_job(const char *cls, const wh_json *args, const wh_enqueue_options *o, double now,
                             wh_err *err) {
    const char *queue = o && o->queue ? o->queue : "default";
    double run_at = o && o->at > 0 ? o->at : (o && o->in > 0 ? now + o->in : 0);
    bool scheduled = run_at > now;
    char jid[WH_JID_SIZE];
    wh_jid_new(jid);
    wh_buf p = WH_BUF_INIT;
    wh_buf_puts(&p, "{\"class\":");
    wh_json_write_string(&p, cls, strlen(cls));
    wh_buf_puts(&p, ",\"args\":");
    int rc = wh_json_write(&p, args, err);
    wh_buf_puts(&p, ",\"queue\":");
    wh_json_write_string(&p, queue, strlen(queue));
    int retry = o ? o->retry : WH_RETRY_DEFAULT;
    if (retry == WH_RETRY_DEFAULT) wh_buf_puts(&p, ",\"retry\":true");
    else if (retry == WH_RETRY_FALSE) wh_buf_puts(&p, ",\"retry\":false");
    else wh_buf_printf(&p, ",\"retry\":%d", retry);
    wh_buf_printf(&p, ",\"jid\":\"%s\",\"created_at\":", jid);
    wh_json_write_float(&p, now, NULL);
    if (!scheduled) { /* schedule members carry no enqueued_at */
        wh_buf_puts(&p, ",\"enqueued_at\":");
        wh_json_write_float(&p, now, NULL);
    }
    wh_buf_putc(&p, '}');
    wh_job *job = rc ? NULL : wh_job_parse(p.data, p.len, NULL, err);
    wh_buf_free(&p);
    if (job) job->run_at = run_at;
    return job;
}

static int unknown_class(const wh_host *h, const char *cls) {
    wh_err err;
    int rc = wh_catalog_unknown_class(wh_host_catalog(h), cls, &err);
    fprintf(stderr, "workerhost: %s\n(a class that no local script defines, a Ruby worker say, needs --unchecked)\n",
            err.msg);
    return wh_cli_exit_status(rc);
}

enum { BULK = 1, UNCHECKED = 2 };

static int enqueue(const wh_cli *cli, wh_host *h, const char *cls, const char *arg, const wh_enqueue_options *o,
                   unsigned flags) {
    (void)cli;
    const wh_config *cfg = wh_host_config(h);
    wh_err err = WH_ERR_INIT;
    if ((flags & UNCHECKED) && cfg->mode != WH_MODE_BACKGROUND_QUEUE)
        return wh_cli_usage_error("enqueue",
                                  "--unchecked needs workers.mode BackgroundQueue (this configuration says %s): "
                                  "only Redis hands a job to a server that may define its class",
                                  wh_mode_name(cfg->mode));
    if (cfg->mode != WH_MODE_BACKGROUND_QUEUE)
        return wh_cli_usage_error("enqueue", "pushing to Redis needs workers.mode BackgroundQueue (this "
                                             "configuration says %s)", wh_mode_name(cfg->mode));
    if (o && o->queue && o->queue[0] == '\0') return wh_cli_usage_error("enqueue", "--queue must not be empty");
    if (o && o->in > 0 && o->at > 0) return wh_cli_usage_error("enqueue", "give either --in or --at, not both");
    if (cls == NULL || cls[0] == '\0') return wh_cli_usage_error("enqueue", "missing CLASS");
    if ((flags & BULK) && (arg == NULL || arg[0] == '\0'))
        return wh_cli_usage_error("enqueue", "--bulk needs a FILE (- for stdin)");
    const wh_worker_def *def = wh_catalog_find(wh_host_catalog(h), cls);
    if (flags & UNCHECKED) {
        if (def) {
            fprintf(stderr,
                    "workerhost: %s is defined by %s: enqueue it without --unchecked, so that its arguments "
                    "are checked\n",
                    cls, def->file);
            return wh_cli_exit_status(WH_EINVAL);
        }
    } else if (def == NULL) {
        return unknown_class(h, cls);
    }

    /* the input: one ARGS_JSON, or the lines of a file */
    wh_buf input = WH_BUF_INIT;
    line *lines = NULL;
    size_t n = 0;
    if (flags & BULK) {
        if (read_all(arg, &input, &err) != 0) {
            wh_buf_free(&input);
            return fail(err.code, err.msg);
        }
        lines = split_lines(&input, &n);
    } else {
        lines = wh_xmalloc(sizeof *lines);
        lines[0] = (line){arg ? arg : (flags & UNCHECKED ? "[]" : "{}"), 0, 0};
        lines[0].len = strlen(lines[0].text);
        n = 1;
    }

    /* check every line before anything is pushed */
    wh_json_limits lim = {cfg->max_payload_bytes, 0};
    wh_json_doc **docs = wh_xcalloc(n ? n : 1, sizeof *docs);
    wh_job **jobs = wh_xcalloc(n ? n : 1, sizeof *jobs);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        docs[i] = wh_json_parse(lines[i].text, lines[i].len, &lim, &err);
        if (docs[i] == NULL) {
            rc = WH_EJSON;
        } else if (flags & UNCHECKED) {
            const wh_json *root = wh_json_doc_root(docs[i]);
            if (root->type != WH_JSON_ARRAY)
                rc = wh_err_set(&err, WH_EARGS,
                                "%s: with --unchecked, the arguments must be the payload's args array, got %s",
                                cls, wh_json_type_name(root));
        } else if (wh_schema_check_call_args(def->schema, wh_json_doc_root(docs[i]), &err) != 0) {
            wh_err_prefix(&err, "%s", cls);
            rc = WH_EARGS;
        }
        if (rc && (flags & BULK)) wh_err_prefix(&err, "%s:%zu", strcmp(arg, "-") == 0 ? "stdin" : arg, lines[i].number);
    }

    /* build the jobs: one created_at for all, as Sidekiq's push_bulk */
    double now = wh_clock_wall();
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (flags & UNCHECKED) {
            jobs[i] = unchecked_job(cls, wh_json_doc_root(docs[i]), o, now, &err);
            wh_json_doc_free(docs[i]);
            if (jobs[i] == NULL) rc = err.code ? err.code : WH_EARGS;
        } else {
            jobs[i] = wh_job_new(def, docs[i], wh_json_doc_root(docs[i]), o, now); /* takes the doc */
        }
        docs[i] = NULL;
    }

    wh_redis_client *c = NULL;
    if (rc == 0 && n > 0) rc = wh_cli_redis_connect(cfg, &c, &err);
    wh_buf text = WH_BUF_INIT;
    wh_redis_item *items = wh_xcalloc(n ? n : 1, sizeof *items);
    if (rc == 0 && n > 0) rc = wh_job_redis_items(jobs, n, wh_clock_wall(), &text, items, &err);
    if (rc == 0 && n > 0) rc = n == 1 && !(flags & BULK) ? wh_redis_client_push(c, &items[0], &err)
                                                         : wh_redis_client_push_bulk(c, items, n, &err);
    wh_free(items);
    wh_buf_free(&text);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) printf("%s\n", jobs[i]->jid);
        if (n == 0) fprintf(stderr, "workerhost: %s holds no jobs; nothing pushed\n", strcmp(arg, "-") ? arg : "stdin");
    }
    wh_redis_client_free(c);
    for (size_t i = 0; i < n; i++) {
        wh_json_doc_free(docs[i]);
        wh_job_free(jobs[i]);
    }
    wh_free(docs);
    wh_free(jobs);
    wh_free(lines);
    wh_buf_free(&input);
    return rc ? fail(rc, err.msg) : 0;
}

int wh_cli_enqueue_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *args_json,
                         const wh_enqueue_options *o) {
    return enqueue(cli, h, cls, args_json, o, 0);
}

int wh_cli_enqueue_bulk_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *file,
                              const wh_enqueue_options *o) {
    return enqueue(cli, h, cls, file, o, BULK);
}

int wh_cli_enqueue_unchecked_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *args_json,
                                   const wh_enqueue_options *o) {
    return enqueue(cli, h, cls, args_json, o, UNCHECKED);
}

int wh_cli_enqueue_bulk_unchecked_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *file,
                                        const wh_enqueue_options *o) {
    return enqueue(cli, h, cls, file, o, BULK | UNCHECKED);
}

/* ---- stats ---- */

static const char *const stats_help =
    "usage: workerhost stats [--json]\n"
    "\n"
    "Reads Redis at queue.uri (with queue.namespace), whatever workers.mode says, and prints what\n"
    "Sidekiq's Stats shows: processed and failed counts, jobs enqueued, scheduled, waiting to retry,\n"
    "dead and in flight (being run by a workerhost), each queue with its size and latency (the age\n"
    "of its oldest job), and each live process (workerhost or Sidekiq) with its busy threads,\n"
    "concurrency and (workerhost) the generation of its worker code. --json prints one JSON object instead.\n"
    "When `workerhost run` runs in this app root (tmp/workerhost.pid), its worker code generation\n"
    "and last reload are shown too (\"local\" in --json).\n"
    "\n"
    "exit status: 0 success, 2 usage or configuration error, 5 Redis unreachable\n";

typedef struct local_host {
    bool found;
    long pid;
    unsigned generation;
    double reloaded_at;
} local_host;

static void print_json(const wh_redis_stats *s, const char *shown, const char *ns, const local_host *lh) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, "{\"redis\":");
    wh_json_write_string(&b, shown, strlen(shown));
    wh_buf_puts(&b, ",\"namespace\":");
    if (ns) wh_json_write_string(&b, ns, strlen(ns));
    else wh_buf_puts(&b, "null");
    wh_buf_printf(&b,
                  ",\"now\":%.6f,\"processed\":%lld,\"failed\":%lld,\"enqueued\":%lld,\"scheduled\":%lld,"
                  "\"retries\":%lld,\"dead\":%lld,\"in_flight\":%lld,\"busy\":%lld,\"queues\":[",
                  s->now, s->processed, s->failed, s->enqueued, s->scheduled, s->retries, s->dead, s->in_flight,
                  s->busy);
    for (size_t i = 0; i < s->nqueues; i++) {
        const wh_redis_queue_stat *q = &s->queues[i];
        wh_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        wh_json_write_string(&b, q->name, strlen(q->name));
        wh_buf_printf(&b, ",\"size\":%lld,\"latency\":%.6f}", q->size, q->latency);
    }
    wh_buf_puts(&b, "],\"processes\":[");
    for (size_t i = 0; i < s->nprocesses; i++) {
        const wh_redis_process_stat *p = &s->processes[i];
        wh_buf_puts(&b, i ? ",{\"identity\":" : "{\"identity\":");
        wh_json_write_string(&b, p->identity, strlen(p->identity));
        wh_buf_puts(&b, ",\"hostname\":");
        if (p->hostname) wh_json_write_string(&b, p->hostname, strlen(p->hostname));
        else wh_buf_puts(&b, "null");
        wh_buf_printf(&b, ",\"pid\":%lld,\"busy\":%lld,\"concurrency\":%lld,\"quiet\":%s,\"beat\":%.6f", p->pid,
                      p->busy, p->concurrency, p->quiet ? "true" : "false", p->beat);
        if (p->generation) wh_buf_printf(&b, ",\"generation\":%lld,\"reloaded_at\":%.6f", p->generation, p->reloaded_at);
        wh_buf_putc(&b, '}');
    }
    wh_buf_puts(&b, "]");
    if (lh->found)
        wh_buf_printf(&b, ",\"local\":{\"pid\":%ld,\"generation\":%u,\"reloaded_at\":%.3f}", lh->pid,
                      lh->generation, lh->reloaded_at);
    wh_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, stdout);
    wh_buf_free(&b);
}

static void print_text(const wh_redis_stats *s, const char *shown, const char *ns, const local_host *lh) {
    printf("redis:      %s%s%s\n", shown, ns ? ", namespace " : "", ns ? ns : "");
    if (lh->found) {
        printf("local host: pid %ld, worker code generation %u", lh->pid, lh->generation);
        if (lh->reloaded_at > 0) printf(", last reload %.1f s ago", s->now > lh->reloaded_at ? s->now - lh->reloaded_at : 0.0);
        printf("\n");
    }
    printf("processed:  %lld\nfailed:     %lld\nenqueued:   %lld\nscheduled:  %lld\nretries:    %lld\n"
           "dead:       %lld\nin flight:  %lld\nbusy:       %lld\n",
           s->processed, s->failed, s->enqueued, s->scheduled, s->retries, s->dead, s->in_flight, s->busy);
    printf("\n");
    if (s->nqueues == 0) {
        printf("no queues\n");
    } else {
        int w = 5;
        for (size_t i = 0; i < s->nqueues; i++)
            if ((int)strlen(s->queues[i].name) > w) w = (int)strlen(s->queues[i].name);
        printf("%-*s  %10s  %12s\n", w, "QUEUE", "SIZE", "LATENCY");
        for (size_t i = 0; i < s->nqueues; i++)
            printf("%-*s  %10lld  %10.3f s\n", w, s->queues[i].name, s->queues[i].size, s->queues[i].latency);
    }
    printf("\n");
    if (s->nprocesses == 0) {
        printf("no processes\n");
        return;
    }
    int w = 7;
    for (size_t i = 0; i < s->nprocesses; i++)
        if ((int)strlen(s->processes[i].identity) > w) w = (int)strlen(s->processes[i].identity);
    printf("%-*s  %6s  %11s  %5s  %10s  %s\n", w, "PROCESS", "BUSY", "CONCURRENCY", "QUIET", "GENERATION",
           "LAST BEAT");
    for (size_t i = 0; i < s->nprocesses; i++) {
        const wh_redis_process_stat *p = &s->processes[i];
        char beat[32] = "unknown", gen[24] = "-"; /* "-": not a workerhost (Sidekiq) */
        if (p->beat > 0) snprintf(beat, sizeof beat, "%.1f s ago", s->now > p->beat ? s->now - p->beat : 0.0);
        if (p->generation) snprintf(gen, sizeof gen, "%lld", p->generation);
        printf("%-*s  %6lld  %11lld  %5s  %10s  %s\n", w, p->identity, p->busy, p->concurrency, p->quiet ? "yes" : "no",
               gen, beat);
    }
}

int wh_cli_stats(const wh_cli *cli) {
    if (cli->help) {
        fputs(stats_help, stdout);
        return 0;
    }
    bool json = false;
    for (int i = 1; i < cli->nwords; i++) {
        if (strcmp(cli->words[i], "--json") == 0) json = true;
        else if (strncmp(cli->words[i], "--", 2) == 0) return wh_cli_usage_error("stats", "unknown option %s", cli->words[i]);
        else return wh_cli_usage_error("stats", "unexpected argument %s", cli->words[i]);
    }
    wh_config_source src = {cli->root, cli->env, cli->config};
    wh_config *cfg = NULL;
    wh_err err = WH_ERR_INIT;
    int rc = wh_config_load(&cfg, &src, &err);
    if (rc) return fail(rc, err.msg);
    wh_cli_config_loaded(cfg);
    wh_redis_client *c = NULL;
    wh_redis_stats s = {0};
    rc = wh_cli_redis_connect(cfg, &c, &err);
    if (rc == 0) rc = wh_redis_client_stats(c, &s, &err);
    if (rc == 0) {
        local_host lh = {0};
        lh.found = wh_cli_local_host(cfg->root, &lh.pid, &lh.generation, &lh.reloaded_at);
        if (json) print_json(&s, wh_redis_client_uri_shown(c), wh_redis_client_namespace(c), &lh);
        else print_text(&s, wh_redis_client_uri_shown(c), wh_redis_client_namespace(c), &lh);
        fflush(stdout);
    }
    wh_redis_stats_free(&s);
    wh_redis_client_free(c);
    wh_config_free(cfg);
    return rc ? fail(rc, err.msg) : 0;
}

int wh_cli_redis_connect(const wh_config *cfg, wh_redis_client **out, wh_err *err) {
    wh_redis_uri uri;
    *out = NULL;
    int rc = wh_redis_uri_parse(cfg->queue_uri, &uri, err);
    if (rc) return rc;
    rc = wh_redis_client_connect(&uri, cfg->queue_namespace, WH_CLI_REDIS_TIMEOUT, out, err);
    wh_redis_uri_free(&uri);
    return rc;
}
