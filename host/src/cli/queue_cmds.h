/* queue_cmds.h -- the command line's Redis side: `workerhost enqueue` in
 * BackgroundQueue mode (single, --bulk FILE, --unchecked) and `workerhost
 * stats`. enqueue.c parses the options and calls these; main.c dispatches
 * "stats" to wh_cli_stats.
 * SPDX-License-Identifier: MIT
 *
 * The enqueue functions push to Redis, so they need workers.mode
 * BackgroundQueue (else they print why and return 2); enqueue.c calls them
 * in that mode, for --bulk and for --unchecked. They read h's configuration
 * (queue.uri, queue.namespace, workers.max_payload_bytes) and catalog;
 * --wait has no meaning there. ARGS_JSON may be NULL: "{}" (or "[]" with
 * --unchecked).
 *
 * Every function prints its own output (jids on stdout, one per line) and
 * messages ("workerhost: ..." on stderr), and returns the exit status:
 * 0 success, 2 usage or configuration error (bad queue.uri, login refused),
 * 3 arguments refused (the message names the argument path, and for --bulk
 * the line), 4 unknown class, 5 Redis unreachable (after at most
 * WH_CLI_REDIS_TIMEOUT seconds). */
#ifndef WH_CLI_QUEUE_CMDS_H
#define WH_CLI_QUEUE_CMDS_H

#include "cli/cli.h"
#include "redis/client.h"
#include "workerhost.h"

/* Seconds allowed for connecting to Redis, and for each command. */
#define WH_CLI_REDIS_TIMEOUT 2.0

/* Connects to cfg's queue.uri (queue.namespace) with WH_CLI_REDIS_TIMEOUT.
 * Returns 0 and an owned client (wh_redis_client_free), or the error of
 * wh_redis_uri_parse / wh_redis_client_connect in err. */
int wh_cli_redis_connect(const wh_config *cfg, wh_redis_client **out, wh_err *err);

/* The lines enqueue's --help adds for these options (ends with a newline). */
extern const char wh_cli_enqueue_redis_help[];

/* Checks args_json against worker cls's schema in C (exactly as
 * wh_host_enqueue: catalog lookup, JSON with workers.max_payload_bytes,
 * wh_schema_check_call_args), builds the job (o: queue, in/at, retry; may be
 * NULL) and pushes it to queue.uri (queue.namespace) as Sidekiq's client
 * does; prints the jid. h is borrowed (its config and catalog are read). */
int wh_cli_enqueue_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *args_json,
                         const wh_enqueue_options *o);

/* --bulk FILE: FILE ("-" = stdin) holds JSON lines, each in the shape of
 * ARGS_JSON; blank lines are skipped. Every line is checked first: a bad one
 * exits 3 naming "FILE:LINE", and nothing is pushed. Then all jobs go in one
 * pipelined bulk push (same options for all, one created_at); prints one jid
 * per job, in the file's order. */
int wh_cli_enqueue_bulk_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *file,
                              const wh_enqueue_options *o);

/* --unchecked: for a class that no local script defines (a Ruby worker):
 * the arguments cannot be checked, so args_json must be the payload's "args"
 * array itself, pushed as given with class cls. The queue is o->queue or
 * "default"; retry is o->retry, or true (Sidekiq's default) when not given.
 * Only in BackgroundQueue mode (else exit 2); refused (exit 2) for a class a
 * local script defines, whose arguments must be checked. */
int wh_cli_enqueue_unchecked_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *args_json,
                                   const wh_enqueue_options *o);

/* --bulk FILE --unchecked: as above, one args array per line. */
int wh_cli_enqueue_bulk_unchecked_redis(const wh_cli *cli, wh_host *h, const char *cls, const char *file,
                                        const wh_enqueue_options *o);

/* workerhost stats [--json]: reads the configuration only (queue.uri,
 * queue.namespace; whatever workers.mode says) and prints processed, failed,
 * enqueued, scheduled, retries, dead, in flight, busy, each queue with its
 * size and latency, and each process with busy/concurrency; --json prints
 * one JSON object instead. Exit 5 when Redis is unreachable. */
int wh_cli_stats(const wh_cli *cli);

#endif
