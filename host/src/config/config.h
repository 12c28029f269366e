/* config.h -- config/<env>.yaml, read with libyaml into a plain struct.
 *
 * Table-driven (redis's standardConfig, nginx's ngx_command_t): every key is
 * one row with its path, type, default and validation. ${VAR} and
 * ${VAR:-default} are replaced from the environment scalar by scalar after
 * parsing, so errors keep their line and column. Unknown keys, wrong types,
 * bad values and a missing file are refused with one message naming the file,
 * line, column and key path:
 *   config/development.yaml:3:16: workers.concurrency: expected an integer >= 1, got "four"
 * The struct is immutable once loaded; it is shared read-only by all threads.
 */
#ifndef WH_CONFIG_H
#define WH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "core/log.h"

typedef enum wh_mode {
    WH_MODE_BACKGROUND_ASYNC = 0, /* the default */
    WH_MODE_BACKGROUND_QUEUE,
    WH_MODE_FOREGROUND_BLOCKING,
} wh_mode;


typedef struct wh_queue_weight {
    char *name; /* owned by the config */
    int weight; /* >= 1; 1 for every entry of a strict list */
} wh_queue_weight;

typedef struct wh_config {
    /* where it came from (all owned by the config) */
    char *root;        /* absolute app root */
    char *env;         /* environment name */
    char *file;        /* the file read, as given/derived (for messages) */

    /* workers: */
    wh_mode mode;                 /* workers.mode; default BackgroundAsync */
    int concurrency;              /* workers.concurrency; >= 1; default 4 */
    char *scripts_dir;            /* workers.scripts, absolute (root joined); default <root>/workers */
    char **lua_path;              /* workers.lua_path: extra module dirs, absolute; default {<root>/lib}; NULL-terminated */
    wh_queue_weight *queues;      /* workers.queues: NULL when absent */
    size_t nqueues;
    bool queues_weighted;         /* true for the [[name, weight], ...] form */
    double timeout;               /* workers.timeout: seconds, > 0; default 30 */
    size_t memory_limit;          /* workers.memory_limit: bytes per VM; default 256 MiB */
    double shutdown_timeout;      /* workers.shutdown_timeout: seconds >= 0; default 25 */
    long recycle_after_jobs;      /* workers.recycle_after_jobs: 0 = never; default 0 */
    size_t recycle_above_memory;  /* workers.recycle_above_memory: bytes, 0 = never; default 0 */
    size_t queue_limit;           /* workers.queue_limit: BackgroundAsync jobs held in memory; default 100000 */
    size_t dead_limit;            /* workers.dead_limit: BackgroundAsync dead list size; default 1000 */
    size_t max_payload_bytes;     /* workers.max_payload_bytes: default 1 MiB */
    bool reload;                  /* workers.reload: default true in development, else false */
    bool allow_unknown_classes;   /* workers.allow_unknown_classes: default false */
    bool allow_core_dumps;        /* workers.allow_core_dumps: default false. Read by the
                                   * command only, which makes itself non-dumpable unless
                                   * it is true; the library changes no process-wide state */

    /* queue: (BackgroundQueue) */
    char *queue_uri;              /* queue.uri; default redis://127.0.0.1:6379/0 */
    char *queue_namespace;        /* queue.namespace; NULL when absent */

    /* Names of the environment variables whose values ${VAR} put into a value
     * that may hold a password (queue.uri), NULL-terminated, or NULL when
     * none. Owned. The command unsets them once the config is loaded. */
    char **secret_env;

    /* logger: */
    wh_log_level log_level;       /* logger.level: debug|info|warn|error; default info */
    wh_log_format log_format;     /* logger.format: text|json; default text */
} wh_config;

typedef struct wh_config_source {
    const char *root;  /* NULL = current directory */
    const char *env;   /* NULL = $WORKERHOST_ENV, else "development" */
    const char *file;  /* NULL = <root>/config/<env>.yaml */
} wh_config_source;

/* Reads and validates the configuration. On success *out is owned: free with
 * wh_config_free. On failure returns WH_ECONFIG with the message described
 * above (*out untouched). */
int wh_config_load(wh_config **out, const wh_config_source *src, wh_err *err);

/* Parses YAML text already in memory (`name` is used in messages). Same
 * contract as wh_config_load. Used by tests. */
/* (Added:) root is used as given, without touching the filesystem: NULL =
 * the current directory, a relative root is joined to it. env NULL is
 * resolved as for wh_config_load and checked the same way. text need not be
 * NUL-terminated. */
int wh_config_parse(wh_config **out, const char *name, const char *text, size_t len,
                    const char *root, const char *env, wh_err *err);

/* Defaults only, as if the file were empty. Owned. */
/* (Added:) root and env are resolved as for wh_config_parse; file is NULL. */
wh_config *wh_config_defaults(const char *root, const char *env);

void wh_config_free(wh_config *cfg); /* accepts NULL */

const char *wh_mode_name(wh_mode m); /* "BackgroundAsync", ... */

#endif
