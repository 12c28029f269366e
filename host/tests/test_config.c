/* test_config.c -- unit tests of config/config.c: defaults, every key, every
 * type's error message (file:line:col and key path), ${VAR} substitution,
 * Sidekiq's queues forms, and file/root/env resolution with temp dirs.
 * SPDX-License-Identifier: MIT
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "test.h"

#define NAME "config/test.yaml"
#define MIB (1024u * 1024u)

static wh_err err;
static char errmsg[sizeof err.msg];

/* Parses text as config/test.yaml of app /app in env "test"; NULL on error
 * (the message is in errmsg). */
static wh_config *parse_env(const char *text, const char *env) {
    wh_config *cfg = NULL;
    wh_err_clear(&err);
    int rc = wh_config_parse(&cfg, NAME, text, strlen(text), "/app", env, &err);
    snprintf(errmsg, sizeof errmsg, "%s", err.msg);
    if (rc != 0) {
        if (rc != WH_ECONFIG || err.code != WH_ECONFIG || cfg != NULL) {
            snprintf(errmsg, sizeof errmsg, "BAD CONTRACT rc=%d code=%d out=%p", rc, err.code, (void *)cfg);
        }
        return NULL;
    }
    return cfg;
}

static wh_config *parse(const char *text) { return parse_env(text, "test"); }

/* Parses text that must be refused; returns the message (or a marker). */
static const char *refuse(const char *text) {
    wh_config *cfg = parse(text);
    if (cfg != NULL) {
        wh_config_free(cfg);
        return "(accepted)";
    }
    return errmsg;
}

/* ==== defaults and every key ============================================ */

static void check_defaults(const wh_config *cfg) {
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
}

static void test_defaults_from_empty_text(void) {
    const char *texts[] = {"", "\n", "# only a comment\n", "~\n", "---\n", "--- ~\n...\n",
                           "workers:\nqueue:\nlogger:\n", "workers: ~\nqueue: null\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        wh_config *cfg = parse(texts[i]);
        check_defaults(cfg);
        if (cfg == NULL) return;
        ASSERT_STREQ(cfg->root, "/app");
        ASSERT_STREQ(cfg->env, "test");
        ASSERT_STREQ(cfg->file, NAME);
        ASSERT_EQ_INT(cfg->mode, WH_MODE_BACKGROUND_ASYNC);
        ASSERT_EQ_INT(cfg->concurrency, 4);
        ASSERT_STREQ(cfg->scripts_dir, "/app/workers");
        ASSERT_STREQ(cfg->lua_path[0], "/app/lib");
        ASSERT(cfg->lua_path[1] == NULL);
        ASSERT(cfg->queues == NULL);
        ASSERT_EQ_INT(cfg->nqueues, 0);
        ASSERT(!cfg->queues_weighted);
        ASSERT_EQ_DBL(cfg->timeout, 30);
        ASSERT_EQ_INT(cfg->memory_limit, 256 * MIB);
        ASSERT_EQ_DBL(cfg->shutdown_timeout, 25);
        ASSERT_EQ_INT(cfg->recycle_after_jobs, 0);
        ASSERT_EQ_INT(cfg->recycle_above_memory, 0);
        ASSERT_EQ_INT(cfg->queue_limit, 100000);
        ASSERT_EQ_INT(cfg->dead_limit, 1000);
        ASSERT_EQ_INT(cfg->max_payload_bytes, 1 * MIB);
        ASSERT(!cfg->reload);
        ASSERT(!cfg->allow_unknown_classes);
        ASSERT(!cfg->allow_core_dumps);
        ASSERT(cfg->secret_env == NULL);
        ASSERT_STREQ(cfg->queue_uri, "redis://127.0.0.1:6379/0");
        ASSERT(cfg->queue_namespace == NULL);
        ASSERT_EQ_INT(cfg->log_level, WH_LOG_INFO);
        ASSERT_EQ_INT(cfg->log_format, WH_LOG_TEXT);
        wh_config_free(cfg);
    }
}

static void test_reload_default_depends_on_env(void) {
    wh_config *cfg = parse_env("", "development");
    ASSERT(cfg != NULL);
    ASSERT(cfg->reload);
    wh_config_free(cfg);
    cfg = parse_env("", "production");
    ASSERT(cfg != NULL);
    ASSERT(!cfg->reload);
    wh_config_free(cfg);
    cfg = parse_env("workers:\n  reload: false\n", "development");
    ASSERT(cfg != NULL);
    ASSERT(!cfg->reload);
    wh_config_free(cfg);
}

static void test_defaults_function(void) {
    wh_config *cfg = wh_config_defaults("/srv/app/", "development");
    ASSERT_STREQ(cfg->root, "/srv/app");
    ASSERT_STREQ(cfg->env, "development");
    ASSERT_STREQ(cfg->scripts_dir, "/srv/app/workers");
    ASSERT_STREQ(cfg->lua_path[0], "/srv/app/lib");
    ASSERT(cfg->reload);
    ASSERT_EQ_INT(cfg->concurrency, 4);
    wh_config_free(cfg);

    char cwd[PATH_MAX];
    ASSERT(getcwd(cwd, sizeof cwd) != NULL);
    cfg = wh_config_defaults(NULL, "x");
    ASSERT_STREQ(cfg->root, cwd);
    ASSERT(!cfg->reload);
    wh_config_free(cfg);
    wh_config_free(NULL);
}

static void test_every_key(void) {
    const char *text =
        "workers:\n"
        "  mode: BackgroundQueue\n"
        "  concurrency: 12\n"
        "  scripts: jobs\n"
        "  lua_path: [vendor/lua, /usr/share/lua/5.4, ./lib/]\n"
        "  queues: [critical, default]\n"
        "  timeout: 2.5\n"
        "  memory_limit: 64MiB\n"
        "  shutdown_timeout: 0\n"
        "  recycle_after_jobs: 500\n"
        "  recycle_above_memory: 48 MiB\n"
        "  queue_limit: 20\n"
        "  dead_limit: 0\n"
        "  max_payload_bytes: 1048576\n"
        "  reload: true\n"
        "  allow_unknown_classes: true\n"
        "  allow_core_dumps: true\n"
        "queue:\n"
        "  uri: redis://redis.local:6380/2\n"
        "  namespace: myapp\n"
        "logger:\n"
        "  level: debug\n"
        "  format: json\n";
    wh_config *cfg = parse(text);
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT_EQ_INT(cfg->mode, WH_MODE_BACKGROUND_QUEUE);
    ASSERT_EQ_INT(cfg->concurrency, 12);
    ASSERT_STREQ(cfg->scripts_dir, "/app/jobs");
    ASSERT_STREQ(cfg->lua_path[0], "/app/vendor/lua");
    ASSERT_STREQ(cfg->lua_path[1], "/usr/share/lua/5.4");
    ASSERT_STREQ(cfg->lua_path[2], "/app/lib");
    ASSERT(cfg->lua_path[3] == NULL);
    ASSERT_EQ_INT(cfg->nqueues, 2);
    ASSERT_STREQ(cfg->queues[0].name, "critical");
    ASSERT_STREQ(cfg->queues[1].name, "default");
    ASSERT_EQ_INT(cfg->queues[0].weight, 1);
    ASSERT_EQ_INT(cfg->queues[1].weight, 1);
    ASSERT(!cfg->queues_weighted);
    ASSERT_EQ_DBL(cfg->timeout, 2.5);
    ASSERT_EQ_INT(cfg->memory_limit, 64 * MIB);
    ASSERT_EQ_DBL(cfg->shutdown_timeout, 0);
    ASSERT_EQ_INT(cfg->recycle_after_jobs, 500);
    ASSERT_EQ_INT(cfg->recycle_above_memory, 48 * MIB);
    ASSERT_EQ_INT(cfg->queue_limit, 20);
    ASSERT_EQ_INT(cfg->dead_limit, 0);
    ASSERT_EQ_INT(cfg->max_payload_bytes, 1048576);
    ASSERT(cfg->reload);
    ASSERT(cfg->allow_unknown_classes);
    ASSERT(cfg->allow_core_dumps);
    ASSERT_STREQ(cfg->queue_uri, "redis://redis.local:6380/2");
    ASSERT_STREQ(cfg->queue_namespace, "myapp");
    ASSERT_EQ_INT(cfg->log_level, WH_LOG_DEBUG);
    ASSERT_EQ_INT(cfg->log_format, WH_LOG_JSON);
    wh_config_free(cfg);

    cfg = parse("workers:\n  mode: ForegroundBlocking\n  scripts: /opt/jobs/\n  lua_path: []\n"
                "logger: {level: error, format: text}\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT_EQ_INT(cfg->mode, WH_MODE_FOREGROUND_BLOCKING);
    ASSERT_STREQ(cfg->scripts_dir, "/opt/jobs");
    ASSERT(cfg->lua_path[0] == NULL);
    ASSERT_EQ_INT(cfg->log_level, WH_LOG_ERROR);
    wh_config_free(cfg);

    ASSERT_STREQ(wh_mode_name(WH_MODE_BACKGROUND_ASYNC), "BackgroundAsync");
    ASSERT_STREQ(wh_mode_name(WH_MODE_BACKGROUND_QUEUE), "BackgroundQueue");
    ASSERT_STREQ(wh_mode_name(WH_MODE_FOREGROUND_BLOCKING), "ForegroundBlocking");
}

/* ==== type errors ======================================================= */

static void test_integer_errors(void) {
    ASSERT_STREQ(refuse("workers:\n  concurrency: four\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"four\"");
    ASSERT_STREQ(refuse("workers:\n  concurrency: 0\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"0\"");
    ASSERT_STREQ(refuse("workers:\n  concurrency: 1025\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"1025\"");
    ASSERT_STREQ(refuse("workers:\n  concurrency: -3\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"-3\"");
    ASSERT_STREQ(refuse("workers:\n  concurrency: 4.0\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"4.0\"");
    ASSERT_STREQ(refuse("workers:\n  concurrency: 0x10\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"0x10\"");
    ASSERT_STREQ(refuse("workers:\n  concurrency: 99999999999999999999999\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"99999999999999999999999\"");
    ASSERT_STREQ(refuse("workers:\n  concurrency: [4]\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got a list");
    ASSERT_STREQ(refuse("workers:\n  concurrency: {n: 4}\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got a mapping");
    ASSERT_STREQ(refuse("workers:\n  concurrency:\n"),
                 NAME ":2:15: workers.concurrency: expected an integer from 1 to 1024, got an empty value "
                      "(remove the key to use the default, 4)");
    ASSERT_STREQ(refuse("workers:\n  concurrency: ~\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got null "
                      "(remove the key to use the default, 4)");
    ASSERT_STREQ(refuse("workers:\n  queue_limit: 0\n"),
                 NAME ":2:16: workers.queue_limit: expected an integer >= 1, got \"0\"");
    ASSERT_STREQ(refuse("workers:\n  recycle_after_jobs: -1\n"),
                 NAME ":2:23: workers.recycle_after_jobs: expected an integer >= 0, got \"-1\"");
    ASSERT_STREQ(refuse("workers:\n  dead_limit: \"\"\n"),
                 NAME ":2:15: workers.dead_limit: expected an integer >= 0, got \"\"");

    /* A quoted number is fine (substitutions produce strings too). */
    wh_config *cfg = parse("workers:\n  concurrency: \"8\"\n  dead_limit: '+5'\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT_EQ_INT(cfg->concurrency, 8);
    ASSERT_EQ_INT(cfg->dead_limit, 5);
    wh_config_free(cfg);
    ASSERT_STREQ(refuse("workers:\n  concurrency: \"eight\"\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"eight\"");
}

static void test_unknown_key_and_section(void) {
    ASSERT_STREQ(refuse("workers:\n  mode: BackgroundAsync\n\n\n  colour: blue\n"),
                 NAME ":5:3: workers.colour: unknown key (known keys: mode, concurrency, scripts, lua_path, "
                      "queues, timeout, memory_limit, shutdown_timeout, recycle_after_jobs, "
                      "recycle_above_memory, queue_limit, dead_limit, max_payload_bytes, reload, "
                      "allow_unknown_classes, allow_core_dumps)");
    ASSERT_STREQ(refuse("queue:\n  url: redis://x\n"),
                 NAME ":2:3: queue.url: unknown key (known keys: uri, namespace)");
    ASSERT_STREQ(refuse("logger:\n  lvl: info\n"),
                 NAME ":2:3: logger.lvl: unknown key (known keys: level, format)");
    ASSERT_STREQ(refuse("# comment\nworker:\n  concurrency: 2\n"),
                 NAME ":2:1: unknown section \"worker\" (known: workers, queue, logger)");
    ASSERT_STREQ(refuse("workers: {}\nconcurrency: 2\n"),
                 NAME ":2:1: unknown section \"concurrency\" (known: workers, queue, logger)");
    ASSERT_STREQ(refuse("workers:\n  <<: {concurrency: 2}\n"),
                 NAME ":2:3: workers: merge keys (<<) are not supported: write the keys out");
    ASSERT_STREQ(refuse("? [a, b]\n: 1\n"), NAME ":1:3: expected a section name, got a list");
    ASSERT_STREQ(refuse("workers:\n  ? {a: 1}\n  : 1\n"), NAME ":2:5: workers: expected a key name, got a mapping");
}

static void test_shape_errors(void) {
    ASSERT_STREQ(refuse("- workers\n"),
                 NAME ":1:1: expected a mapping of sections (workers, queue, logger) at the top level, got a list");
    ASSERT_STREQ(refuse("hello\n"),
                 NAME ":1:1: expected a mapping of sections (workers, queue, logger) at the top level, got \"hello\"");
    ASSERT_STREQ(refuse("workers: 4\n"), NAME ":1:10: workers: expected a mapping of settings, got \"4\"");
    ASSERT_STREQ(refuse("logger: [a]\n"), NAME ":1:9: logger: expected a mapping of settings, got a list");
    ASSERT_STREQ(refuse("workers: {}\n---\nqueue: {}\n"),
                 NAME ":2:1: a second YAML document starts here; the file must hold exactly one");
    ASSERT_STREQ(refuse("workers:\n  concurrency: !ENV ${N}\n"),
                 NAME ":2:16: workers.concurrency: unsupported tag \"!ENV\" (write the value without a tag)");
    /* Standard tags are fine. */
    wh_config *cfg = parse("workers:\n  concurrency: !!int 3\n  scripts: !!str jobs\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT_EQ_INT(cfg->concurrency, 3);
    wh_config_free(cfg);
}

static void test_mode_and_enums(void) {
    ASSERT_STREQ(refuse("workers:\n  mode: Background\n"),
                 NAME ":2:9: workers.mode: expected one of BackgroundAsync, BackgroundQueue, ForegroundBlocking, "
                      "got \"Background\"");
    ASSERT_STREQ(refuse("workers:\n  mode: backgroundqueue\n"),
                 NAME ":2:9: workers.mode: expected one of BackgroundAsync, BackgroundQueue, ForegroundBlocking, "
                      "got \"backgroundqueue\" (did you mean BackgroundQueue? names are case-sensitive)");
    ASSERT_STREQ(refuse("logger:\n  level: verbose\n"),
                 NAME ":2:10: logger.level: expected one of debug, info, warn, error, got \"verbose\"");
    ASSERT_STREQ(refuse("logger:\n  format: xml\n"),
                 NAME ":2:11: logger.format: expected one of text, json, got \"xml\"");
    wh_config *cfg = parse("logger:\n  level: warn\n");
    ASSERT(cfg != NULL);
    ASSERT_EQ_INT(cfg->log_level, WH_LOG_WARN);
    wh_config_free(cfg);
}

static void test_booleans(void) {
    const char *bad[] = {"yes", "no", "on", "off", "True", "FALSE", "y", "1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128], want[512];
        snprintf(text, sizeof text, "workers:\n  reload: %s\n", bad[i]);
        snprintf(want, sizeof want,
                 NAME ":2:11: workers.reload: expected true or false, got \"%s\" "
                      "(write true or false; yes/no, on/off and other spellings are not accepted)",
                 bad[i]);
        ASSERT_STREQ(refuse(text), want);
    }
    wh_config *cfg = parse("workers:\n  reload: \"true\"\n  allow_unknown_classes: false\n"
                           "  allow_core_dumps: false\n");
    ASSERT(cfg != NULL);
    ASSERT(cfg->reload);
    ASSERT(!cfg->allow_unknown_classes);
    ASSERT(!cfg->allow_core_dumps);
    wh_config_free(cfg);
    ASSERT_STREQ(refuse("workers:\n  allow_core_dumps: yes\n"),
                 NAME ":2:21: workers.allow_core_dumps: expected true or false, got \"yes\" "
                      "(write true or false; yes/no, on/off and other spellings are not accepted)");
    ASSERT_STREQ(refuse("workers:\n  allow_core_dumps:\n"),
                 NAME ":2:20: workers.allow_core_dumps: expected true or false, got an empty value "
                      "(remove the key to use the default, false)");
}

/* ==== sizes and durations =============================================== */

static size_t size_of(const char *value) {
    char text[128];
    snprintf(text, sizeof text, "workers:\n  max_payload_bytes: %s\n", value);
    wh_config *cfg = parse(text);
    if (cfg == NULL) return 0;
    size_t n = cfg->max_payload_bytes;
    wh_config_free(cfg);
    return n;
}

static void test_sizes(void) {
    ASSERT_EQ_INT(size_of("1048576"), 1048576);
    ASSERT_EQ_INT(size_of("\"2048\""), 2048);
    ASSERT_EQ_INT(size_of("256MiB"), 256 * MIB);
    ASSERT_EQ_INT(size_of("64 MB"), 64000000);
    ASSERT_EQ_INT(size_of("1KB"), 1000);
    ASSERT_EQ_INT(size_of("2kB"), 2000);
    ASSERT_EQ_INT(size_of("3KiB"), 3072);
    ASSERT_EQ_INT(size_of("1GB"), 1000000000);
    ASSERT_EQ_INT(size_of("2GiB"), 2048ll * MIB);
    ASSERT_EQ_INT(size_of("1.5GiB"), 1536ll * MIB);
    ASSERT_EQ_INT(size_of("0.5KB"), 500);
    ASSERT_EQ_INT(size_of("10 B"), 10);

    const char *bad[] = {"12 XB", "1.1B", "1.5", "-5", "1e6", "64mb", "MiB", "1 000", "0.0000000001GiB",
                         "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "workers:\n  max_payload_bytes: %s\n", bad[i]);
        ASSERT_CONTAINS(refuse(text), NAME ":2:22: workers.max_payload_bytes: expected a number of bytes >= 1, "
                                          "or a size such as \"256MiB\" or \"64 MB\" "
                                          "(units B, KB, MB, GB, KiB, MiB, GiB), got");
    }
    ASSERT_STREQ(refuse("workers:\n  memory_limit: 100KB\n"),
                 NAME ":2:17: workers.memory_limit: expected a size of at least 1MiB: a number of bytes, "
                      "or a size such as \"256MiB\" or \"64 MB\" (units B, KB, MB, GB, KiB, MiB, GiB), got \"100KB\"");
    ASSERT_STREQ(refuse("workers:\n  max_payload_bytes: 0\n"),
                 NAME ":2:22: workers.max_payload_bytes: expected a number of bytes >= 1, or a size such as "
                      "\"256MiB\" or \"64 MB\" (units B, KB, MB, GB, KiB, MiB, GiB), got \"0\"");
    wh_config *cfg = parse("workers:\n  memory_limit: 1MiB\n  recycle_above_memory: 0\n");
    ASSERT(cfg != NULL);
    ASSERT_EQ_INT(cfg->memory_limit, MIB);
    wh_config_free(cfg);
    ASSERT_STREQ(refuse("workers:\n  memory_limit: 64MiB\n  recycle_above_memory: 64MiB\n"),
                 NAME ":3:25: workers.recycle_above_memory: must be below workers.memory_limit (64MiB), or 0 for "
                      "never, got 64MiB: a VM cannot grow past its memory limit, so it would never be recycled");
    ASSERT_STREQ(refuse("workers:\n  recycle_above_memory: 1GiB\n"),
                 NAME ":2:25: workers.recycle_above_memory: must be below workers.memory_limit (256MiB), or 0 for "
                      "never, got 1GiB: a VM cannot grow past its memory limit, so it would never be recycled");
}

static double seconds_of(const char *key, const char *value) {
    char text[128];
    snprintf(text, sizeof text, "workers:\n  %s: %s\n", key, value);
    wh_config *cfg = parse(text);
    if (cfg == NULL) return -1;
    double d = strcmp(key, "timeout") == 0 ? cfg->timeout : cfg->shutdown_timeout;
    wh_config_free(cfg);
    return d;
}

static void test_seconds(void) {
    ASSERT_EQ_DBL(seconds_of("timeout", "10"), 10);
    ASSERT_EQ_DBL(seconds_of("timeout", "2.5"), 2.5);
    ASSERT_EQ_DBL(seconds_of("timeout", "1e1"), 10);
    ASSERT_EQ_DBL(seconds_of("timeout", "\"45\""), 45);
    ASSERT_EQ_DBL(seconds_of("timeout", "500ms"), 0.5);
    ASSERT_EQ_DBL(seconds_of("timeout", "30s"), 30);
    ASSERT_EQ_DBL(seconds_of("timeout", "5m"), 300);
    ASSERT_EQ_DBL(seconds_of("timeout", "1h"), 3600);
    ASSERT_EQ_DBL(seconds_of("timeout", "1.5h"), 5400);
    ASSERT_EQ_DBL(seconds_of("timeout", "90 s"), 90);
    ASSERT_EQ_DBL(seconds_of("shutdown_timeout", "0"), 0);
    ASSERT_EQ_DBL(seconds_of("shutdown_timeout", "0s"), 0);

    const char *want_t = NAME ":2:12: workers.timeout: expected a number of seconds > 0 (at most 31536000), "
                              "or a duration such as \"500ms\", \"30s\", \"5m\" or \"1h\", got ";
    const char *bad[] = {"0", "-1", "0ms", "fast", "5 min", ".inf", ".nan", "1d", "1m30s", "3e10", "s", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "workers:\n  timeout: %s\n", bad[i]);
        ASSERT_CONTAINS(refuse(text), want_t);
    }
    ASSERT_STREQ(refuse("workers:\n  timeout: fast\n"),
                 NAME ":2:12: workers.timeout: expected a number of seconds > 0 (at most 31536000), or a duration "
                      "such as \"500ms\", \"30s\", \"5m\" or \"1h\", got \"fast\"");
    ASSERT_STREQ(refuse("workers:\n  shutdown_timeout: -1s\n"),
                 NAME ":2:21: workers.shutdown_timeout: expected a number of seconds >= 0 (at most 31536000), or a "
                      "duration such as \"500ms\", \"30s\", \"5m\" or \"1h\", got \"-1s\"");
}

/* ==== strings and paths ================================================= */

static void test_strings_and_paths(void) {
    ASSERT_STREQ(refuse("queue:\n  uri: localhost:6379\n"),
                 NAME ":2:8: queue.uri: expected a Redis URI, redis://[user:password@]host[:port][/db] or "
                      "unix:///path/to.sock[?db=N] (unknown scheme), got \"localhost:6379\"");
    /* refused where the host would refuse it, with file:line:col */
    ASSERT_STREQ(refuse("queue:\n  uri: redis://h:6379/x\n"),
                 NAME ":2:8: queue.uri: expected a Redis URI, redis://[user:password@]host[:port][/db] or "
                      "unix:///path/to.sock[?db=N] (the database after '/' must be a number), got \"redis://h:6379/x\"");
    ASSERT_CONTAINS(refuse("queue:\n  uri: rediss://h:6380\n"),
                    NAME ":2:8: queue.uri: expected a Redis URI, redis://[user:password@]host[:port][/db] or "
                         "unix:///path/to.sock[?db=N] (TLS is not supported by this build");
    ASSERT_STREQ(refuse("queue:\n  uri: \"\"\n"), NAME ":2:8: queue.uri: expected a non-empty string, got \"\"");
    ASSERT_STREQ(refuse("workers:\n  scripts: [a]\n"),
                 NAME ":2:12: workers.scripts: expected a directory (a non-empty string), got a list");
    ASSERT_STREQ(refuse("workers:\n  lua_path: lib\n"),
                 NAME ":2:13: workers.lua_path: expected a list of directories, got \"lib\"");
    ASSERT_STREQ(refuse("workers:\n  lua_path:\n    - lib\n    - ''\n"),
                 NAME ":4:7: workers.lua_path[1]: expected a directory (a non-empty string), got \"\"");
    ASSERT_STREQ(refuse("workers:\n  lua_path: [lib, [x]]\n"),
                 NAME ":2:19: workers.lua_path[1]: expected a directory (a string), got a list");
    ASSERT_STREQ(refuse("queue:\n  uri: \"a\\0b\"\n"), NAME ":2:8: queue.uri: the value contains a NUL character");

    wh_config *cfg = parse("queue:\n  uri: unix:///run/redis.sock\n  namespace: \"\"\n");
    ASSERT(cfg != NULL);
    ASSERT_STREQ(cfg->queue_uri, "unix:///run/redis.sock");
    ASSERT(cfg->queue_namespace == NULL);
    wh_config_free(cfg);
    cfg = parse("queue:\n  namespace: ~\n");
    ASSERT(cfg != NULL);
    ASSERT(cfg->queue_namespace == NULL);
    wh_config_free(cfg);
    cfg = parse("workers:\n  scripts: .\n  lua_path: [\"./\", a//]\n");
    ASSERT(cfg != NULL);
    ASSERT_STREQ(cfg->scripts_dir, "/app");
    ASSERT_STREQ(cfg->lua_path[0], "/app");
    ASSERT_STREQ(cfg->lua_path[1], "/app/a");
    wh_config_free(cfg);
}

/* ==== queues ============================================================ */

static void test_queues(void) {
    wh_config *cfg = parse("workers:\n  queues:\n    - [critical, 3]\n    - [default, 1]\n    - [low, \"2\"]\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT(cfg->queues_weighted);
    ASSERT_EQ_INT(cfg->nqueues, 3);
    ASSERT_STREQ(cfg->queues[0].name, "critical");
    ASSERT_EQ_INT(cfg->queues[0].weight, 3);
    ASSERT_STREQ(cfg->queues[1].name, "default");
    ASSERT_EQ_INT(cfg->queues[1].weight, 1);
    ASSERT_EQ_INT(cfg->queues[2].weight, 2);
    wh_config_free(cfg);

    cfg = parse("workers:\n  queues: [only]\n");
    ASSERT(cfg != NULL);
    ASSERT(!cfg->queues_weighted);
    ASSERT_EQ_INT(cfg->nqueues, 1);
    wh_config_free(cfg);

    cfg = parse("workers:\n  queues: ~\n");
    ASSERT(cfg != NULL);
    ASSERT(cfg->queues == NULL);
    wh_config_free(cfg);

    ASSERT_STREQ(refuse("workers:\n  queues: [critical, [default, 1]]\n"),
                 NAME ":2:22: workers.queues[1]: a [name, weight] pair, but workers.queues[0] is a plain name: use "
                      "one form for the whole list, either [critical, default] or [[critical, 3], [default, 1]]");
    ASSERT_STREQ(refuse("workers:\n  queues:\n    - [critical, 3]\n    - default\n"),
                 NAME ":4:7: workers.queues[1]: a plain queue name, but workers.queues[0] is a [name, weight] pair: "
                      "use one form for the whole list, either [critical, default] or [[critical, 3], [default, 1]]");
    ASSERT_STREQ(refuse("workers:\n  queues: []\n"),
                 NAME ":2:11: workers.queues: an empty list: name at least one queue, or remove the key");
    ASSERT_STREQ(refuse("workers:\n  queues: [a, b, a]\n"),
                 NAME ":2:18: workers.queues[2]: duplicate queue \"a\" (already workers.queues[0])");
    ASSERT_STREQ(refuse("workers:\n  queues: [[a, 1], [a, 2]]\n"),
                 NAME ":2:21: workers.queues[1][0]: duplicate queue \"a\" (already workers.queues[0])");
    ASSERT_STREQ(refuse("workers:\n  queues: [a, \"\"]\n"), NAME ":2:15: workers.queues[1]: empty queue name");
    ASSERT_STREQ(refuse("workers:\n  queues: [a, ~]\n"), NAME ":2:15: workers.queues[1]: empty queue name");
    ASSERT_STREQ(refuse("workers:\n  queues:\n    - [a, 0]\n"),
                 NAME ":3:11: workers.queues[0][1]: expected a weight, an integer from 1 to 1000, got \"0\"");
    ASSERT_STREQ(refuse("workers:\n  queues:\n    - [a, heavy]\n"),
                 NAME ":3:11: workers.queues[0][1]: expected a weight, an integer from 1 to 1000, got \"heavy\"");
    ASSERT_STREQ(refuse("workers:\n  queues:\n    - [a, 1, 2]\n"),
                 NAME ":3:7: workers.queues[0]: expected a [name, weight] pair, got a list of 3 items");
    ASSERT_STREQ(refuse("workers:\n  queues:\n    - [a]\n"),
                 NAME ":3:7: workers.queues[0]: expected a [name, weight] pair, got a list of 1 item");
    ASSERT_STREQ(refuse("workers:\n  queues:\n    - {a: 1}\n"),
                 NAME ":3:7: workers.queues[0]: expected a queue name or a [name, weight] pair, got a mapping");
    ASSERT_STREQ(refuse("workers:\n  queues: default\n"),
                 NAME ":2:11: workers.queues: expected a list of queue names, or a list of [name, weight] pairs, "
                      "got \"default\"");
}

/* ==== ${VAR} substitution =============================================== */

static void test_env_substitution(void) {
    setenv("WH_T_HOST", "10.0.0.5", 1);
    setenv("WH_T_N", "16", 1);
    setenv("WH_T_EMPTY", "", 1);
    setenv("WH_T_WORD", "four", 1);
    unsetenv("WH_T_UNSET");

    wh_config *cfg = parse("workers:\n"
                           "  concurrency: ${WH_T_N}\n"
                           "  queues: [\"${WH_T_UNSET:-default}\", q$$1, a$b, \"${WH_T_EMPTY}x\"]\n"
                           "  timeout: ${WH_T_UNSET:-2}m\n"
                           "queue:\n"
                           "  uri: redis://${WH_T_HOST:-127.0.0.1}:${WH_T_PORT:-6379}/${WH_T_EMPTY:-0}\n"
                           "  namespace: ${WH_T_EMPTY}\n"
                           "logger:\n"
                           "  level: '${WH_T_UNSET:-warn}'\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT_EQ_INT(cfg->concurrency, 16);
    ASSERT_STREQ(cfg->queues[0].name, "default");
    ASSERT_STREQ(cfg->queues[1].name, "q$1");
    ASSERT_STREQ(cfg->queues[2].name, "a$b");
    ASSERT_STREQ(cfg->queues[3].name, "x");
    ASSERT_EQ_DBL(cfg->timeout, 120);
    ASSERT_STREQ(cfg->queue_uri, "redis://10.0.0.5:6379/0");
    ASSERT(cfg->queue_namespace == NULL); /* set but empty: no namespace */
    ASSERT_EQ_INT(cfg->log_level, WH_LOG_WARN);
    wh_config_free(cfg);

    cfg = parse("queue:\n  namespace: \"$${NOT_A_VAR} $ {x} $\"\n");
    ASSERT(cfg != NULL);
    ASSERT_STREQ(cfg->queue_namespace, "${NOT_A_VAR} $ {x} $");
    wh_config_free(cfg);

    ASSERT_STREQ(refuse("queue:\n  uri: redis://${WH_T_UNSET}:6379\n"),
                 NAME ":2:8: queue.uri: environment variable WH_T_UNSET is not set "
                      "(write ${WH_T_UNSET:-default} to give a default)");
    ASSERT_STREQ(refuse("workers:\n  concurrency: ${WH_T_WORD}\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"four\" "
                      "(from \"${WH_T_WORD}\")");
    ASSERT_STREQ(refuse("workers:\n  concurrency: ${WH_T_EMPTY}\n"),
                 NAME ":2:16: workers.concurrency: expected an integer from 1 to 1024, got \"\" "
                      "(from \"${WH_T_EMPTY}\")");
    ASSERT_STREQ(refuse("queue:\n  uri: \"redis://${WH_T_HOST\"\n"),
                 NAME ":2:8: queue.uri: unterminated \"${WH_T_HOST\": missing \"}\"");
    ASSERT_STREQ(refuse("queue:\n  uri: redis://${}\n"),
                 NAME ":2:8: queue.uri: malformed \"${}\": a variable name starts with a letter or \"_\" and has "
                      "only letters, digits and \"_\"");
    ASSERT_STREQ(refuse("queue:\n  uri: redis://${1X}\n"),
                 NAME ":2:8: queue.uri: malformed \"${1X}\": a variable name starts with a letter or \"_\" and has "
                      "only letters, digits and \"_\"");
    ASSERT_STREQ(refuse("queue:\n  uri: redis://${A-B}\n"),
                 NAME ":2:8: queue.uri: malformed \"${A-B}\": write ${NAME} or ${NAME:-default}, where NAME has only "
                      "letters, digits and \"_\"");
    ASSERT_STREQ(refuse("queue:\n  uri: redis://${A:-${B}}\n"),
                 NAME ":2:8: queue.uri: malformed \"${A:-${B}\": a ${...} inside a default is not supported");
    ASSERT_STREQ(refuse("workers:\n  queues:\n    - [a, \"${WH_T_UNSET}\"]\n"),
                 NAME ":3:11: workers.queues[0][1]: environment variable WH_T_UNSET is not set "
                      "(write ${WH_T_UNSET:-default} to give a default)");
    unsetenv("WH_T_HOST");
    unsetenv("WH_T_N");
    unsetenv("WH_T_EMPTY");
    unsetenv("WH_T_WORD");
}

/* A queue.uri that may hold a password is never quoted whole: neither the
 * value nor the ${...} text it came from (issue: faults #12). */
static void test_uri_password_redacted(void) {
    static const struct { const char *url, *shown; } cases[] = {
        {"http://:s3cret@host", "\"http://***@host\""},
        {"http://u:s3cret@host:6379/0", "\"http://***@host:6379/0\""},
        {"redis:/:s3cret@host", "\"redis:***@host\""},
        {"s3cret@host", "\"***@host\""},
        {"localhost:s3cret@/x@host", "\"localhost:***@host\""},
        {"redis//:s3cret@host", "\"redis//***@host\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("WH_T_REDIS_URL", cases[i].url, 1);
        const char *msg = refuse("queue:\n  uri: ${WH_T_REDIS_URL}\n");
        if (strstr(msg, "s3cret") != NULL) WH_TEST_FAIL("%s: the password is shown: %s", cases[i].url, msg);
        ASSERT_CONTAINS(msg, NAME ":2:8: queue.uri: expected a Redis URI, redis://[user:password@]host");
        ASSERT_CONTAINS(msg, cases[i].shown);
        ASSERT_CONTAINS(msg, "(from \"${WH_T_REDIS_URL}\")");
    }
    unsetenv("WH_T_REDIS_URL");
    /* written in the file, not from the environment */
    ASSERT_STREQ(refuse("queue:\n  uri: \"http://admin:s3cret@host/0\"\n"),
                 NAME ":2:8: queue.uri: expected a Redis URI, redis://[user:password@]host[:port][/db] or "
                      "unix:///path/to.sock[?db=N] (unknown scheme), got \"http://***@host/0\"");
    /* a password around a malformed ${ */
    const char *msg = refuse("queue:\n  uri: \"redis://u:s3cret${X@host\"\n");
    if (strstr(msg, "s3cret") != NULL) WH_TEST_FAIL("shown: %s", msg);
    ASSERT_STREQ(msg, NAME ":2:8: queue.uri: unterminated \"***@host\": missing \"}\"");
    /* a URI of the right scheme that the host could not use is refused here
     * too, where it is written, still without its password */
    setenv("WH_T_REDIS_URL", "redis://:s3cret@host:notaport/0", 1);
    msg = refuse("queue:\n  uri: ${WH_T_REDIS_URL}\n");
    if (strstr(msg, "s3cret") != NULL) WH_TEST_FAIL("shown: %s", msg);
    ASSERT_CONTAINS(msg, NAME ":2:8: queue.uri: expected a Redis URI");
    ASSERT_CONTAINS(msg, "got \"redis://***@host:notaport/0\" (from \"${WH_T_REDIS_URL}\")");
    unsetenv("WH_T_REDIS_URL");
}

/* secret_env: the variables whose values went into queue.uri, which the
 * command unsets; no other variable (faults #13). */
static void test_secret_env(void) {
    setenv("WH_T_REDIS_URL", "redis://:s3cret@host:6379/0", 1);
    setenv("WH_T_PW", "s3cret", 1);
    setenv("WH_T_N", "3", 1);
    setenv("WH_T_EMPTY", "", 1);
    unsetenv("WH_T_UNSET");
    wh_config *cfg = parse("workers:\n  concurrency: ${WH_T_N}\nqueue:\n  uri: ${WH_T_REDIS_URL}\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT(cfg->secret_env != NULL);
    ASSERT_STREQ(cfg->secret_env[0], "WH_T_REDIS_URL");
    ASSERT(cfg->secret_env[1] == NULL);
    wh_config_free(cfg);
    /* every variable used in the URI; not one that gave way to its default */
    cfg = parse("queue:\n  uri: \"redis://:${WH_T_PW}$${X}@${WH_T_UNSET:-h}:${WH_T_EMPTY:-1}/0\"\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT_STREQ(cfg->queue_uri, "redis://:s3cret${X}@h:1/0");
    ASSERT_STREQ(cfg->secret_env[0], "WH_T_PW");
    ASSERT(cfg->secret_env[1] == NULL);
    wh_config_free(cfg);
    cfg = parse("queue:\n  uri: redis://h\n  namespace: ${WH_T_N}\n");
    ASSERT(cfg != NULL);
    ASSERT(cfg->secret_env == NULL);
    wh_config_free(cfg);
    unsetenv("WH_T_REDIS_URL");
    unsetenv("WH_T_PW");
    unsetenv("WH_T_N");
    unsetenv("WH_T_EMPTY");
}

/* ==== YAML itself ======================================================= */

static void test_yaml_errors(void) {
    ASSERT_STREQ(refuse("workers:\n  concurrency: 4\n   mode: x: y\n"),
                 NAME ":3:8: mapping values are not allowed in this context");
    ASSERT_STREQ(refuse("workers:\n  queues: [a, b\n"),
                 NAME ":3:1: did not find expected ',' or ']' (while parsing a flow sequence at line 2, column 11)");
    ASSERT_STREQ(refuse("workers:\n  concurrency: *nope\n"),
                 NAME ":2:16: found undefined alias");
    ASSERT_STREQ(refuse("workers:\n  scripts: \"a\xff\"\n"), NAME ":2:14: invalid leading UTF-8 octet (byte 0xFF)");
    ASSERT_STREQ(refuse("workers:\n\tconcurrency: 3\n"),
                 NAME ":2:1: found character that cannot start any token (while scanning for the next token at "
                      "line 2, column 1); YAML does not allow tabs for indentation, use spaces");
}

static void test_duplicates(void) {
    ASSERT_STREQ(refuse("workers:\n  concurrency: 2\n  timeout: 3\n  concurrency: 5\n"),
                 NAME ":4:3: workers.concurrency: duplicate key (first at line 2, column 3)");
    ASSERT_STREQ(refuse("workers: {}\nlogger: {}\nworkers: {}\n"),
                 NAME ":3:1: workers: duplicate section (first at line 1, column 1)");
}

static void test_aliases(void) {
    wh_config *cfg = parse("workers:\n"
                           "  queues: &qs [critical, default]\n"
                           "  concurrency: &n 6\n"
                           "  queue_limit: *n\n"
                           "  lua_path: &dirs [a, b]\n"
                           "logger: &log\n"
                           "  level: debug\n");
    if (cfg == NULL) WH_TEST_FAIL("refused: %s", errmsg);
    ASSERT_EQ_INT(cfg->concurrency, 6);
    ASSERT_EQ_INT(cfg->queue_limit, 6);
    ASSERT_EQ_INT(cfg->nqueues, 2);
    ASSERT_EQ_INT(cfg->log_level, WH_LOG_DEBUG);
    wh_config_free(cfg);
    /* A recursive alias cannot recurse: it is just a list where a name was expected. */
    ASSERT_STREQ(refuse("workers:\n  queues: &q [a, *q]\n"),
                 NAME ":2:11: workers.queues[1]: a [name, weight] pair, but workers.queues[0] is a plain name: use "
                      "one form for the whole list, either [critical, default] or [[critical, 3], [default, 1]]");
}

/* ==== files, root and env =============================================== */

static char tmp_root[64];

static void write_file(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_root, rel);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void rm(const char *rel) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp_root, rel);
    if (unlink(path) != 0) rmdir(path);
}

static int make_app(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/wh_test_config_XXXXXX");
    if (mkdtemp(tmp_root) == NULL) return -1;
    char path[512];
    snprintf(path, sizeof path, "%s/config", tmp_root);
    if (mkdir(path, 0700) != 0) return -1;
    write_file("config/development.yaml", "workers:\n  concurrency: 2\n");
    write_file("config/staging.yaml", "workers:\n  concurrency: 3\n  scripts: jobs\n");
    write_file("config/broken.yaml", "workers:\n  concurrency: four\n");
    return 0;
}

static void remove_app(void) {
    rm("config/development.yaml");
    rm("config/staging.yaml");
    rm("config/broken.yaml");
    rm("config");
    rmdir(tmp_root);
}

static void test_load_files(void) {
    ASSERT_EQ_INT(make_app(), 0);
    char real[PATH_MAX];
    ASSERT(realpath(tmp_root, real) != NULL);
    char want[PATH_MAX + 128];
    wh_config *cfg = NULL;

    /* env from WORKERHOST_ENV, file derived from root and env */
    setenv("WORKERHOST_ENV", "staging", 1);
    wh_config_source src = {tmp_root, NULL, NULL};
    wh_err_clear(&err);
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), 0);
    ASSERT_STREQ(cfg->env, "staging");
    ASSERT_STREQ(cfg->root, real);
    ASSERT_EQ_INT(cfg->concurrency, 3);
    snprintf(want, sizeof want, "%s/jobs", real);
    ASSERT_STREQ(cfg->scripts_dir, want);
    snprintf(want, sizeof want, "%s/config/staging.yaml", real);
    ASSERT_STREQ(cfg->file, want);
    ASSERT(!cfg->reload);
    wh_config_free(cfg);
    cfg = NULL;

    /* an explicit env wins over WORKERHOST_ENV; empty WORKERHOST_ENV = development */
    src.env = "development";
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), 0);
    ASSERT_EQ_INT(cfg->concurrency, 2);
    ASSERT(cfg->reload);
    wh_config_free(cfg);
    cfg = NULL;
    src.env = NULL;
    setenv("WORKERHOST_ENV", "", 1);
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), 0);
    ASSERT_STREQ(cfg->env, "development");
    wh_config_free(cfg);
    cfg = NULL;
    unsetenv("WORKERHOST_ENV");

    /* errors carry the derived file name */
    src.env = "broken";
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), WH_ECONFIG);
    ASSERT(cfg == NULL);
    snprintf(want, sizeof want,
             "%s/config/broken.yaml:2:16: workers.concurrency: expected an integer from 1 to 1024, got \"four\"", real);
    ASSERT_STREQ(err.msg, want);

    /* a missing file */
    src.env = "production";
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), WH_ECONFIG);
    ASSERT_EQ_INT(err.code, WH_ECONFIG);
    snprintf(want, sizeof want, "%s/config/production.yaml: cannot read: No such file or directory", real);
    ASSERT_STREQ(err.msg, want);

    /* bad env names */
    src.env = "../etc/passwd";
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), WH_ECONFIG);
    ASSERT_STREQ(err.msg, "invalid environment name \"../etc/passwd\": use only letters, digits, \"_\" and \"-\"");
    src.env = "";
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), WH_ECONFIG);
    ASSERT_STREQ(err.msg, "invalid environment name \"\": use only letters, digits, \"_\" and \"-\"");
    src.env = NULL;
    setenv("WORKERHOST_ENV", "prod uction", 1);
    ASSERT_EQ_INT(wh_config_load(&cfg, &src, &err), WH_ECONFIG);
    ASSERT_STREQ(err.msg, "invalid environment name \"prod uction\" (from WORKERHOST_ENV): use only letters, digits, "
                          "\"_\" and \"-\"");
    unsetenv("WORKERHOST_ENV");
    ASSERT(cfg == NULL);

    /* an explicit file, relative to the current directory; paths in it stay relative to root */
    char cwd[PATH_MAX];
    ASSERT(getcwd(cwd, sizeof cwd) != NULL);
    ASSERT_EQ_INT(chdir(tmp_root), 0);
    wh_config_source src2 = {"/", "staging", "config/staging.yaml"};
    int rc = wh_config_load(&cfg, &src2, &err);
    ASSERT_EQ_INT(chdir(cwd), 0);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_STREQ(cfg->file, "config/staging.yaml");
    ASSERT_STREQ(cfg->root, "/");
    ASSERT_STREQ(cfg->scripts_dir, "/jobs");
    wh_config_free(cfg);
    cfg = NULL;

    /* root NULL = the current directory */
    ASSERT_EQ_INT(chdir(tmp_root), 0);
    wh_config_source src3 = {NULL, "development", NULL};
    rc = wh_config_load(&cfg, &src3, &err);
    ASSERT_EQ_INT(chdir(cwd), 0);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_STREQ(cfg->root, real);
    ASSERT_EQ_INT(cfg->concurrency, 2);
    wh_config_free(cfg);
    cfg = NULL;

    /* a directory given as the file */
    snprintf(want, sizeof want, "%s/config", tmp_root);
    wh_config_source src4 = {tmp_root, "development", want};
    ASSERT_EQ_INT(wh_config_load(&cfg, &src4, &err), WH_ECONFIG);
    snprintf(want, sizeof want, "%s/config: cannot read: Is a directory", tmp_root);
    ASSERT_STREQ(err.msg, want);

    remove_app();

    /* a root that does not exist, and one that is a file */
    wh_config_source src5 = {"/nonexistent/wh_app", NULL, NULL};
    ASSERT_EQ_INT(wh_config_load(&cfg, &src5, &err), WH_ECONFIG);
    ASSERT_STREQ(err.msg, "root directory /nonexistent/wh_app: No such file or directory");
    wh_config_source src6 = {"/etc/hostname", NULL, NULL};
    if (access("/etc/hostname", F_OK) == 0) {
        ASSERT_EQ_INT(wh_config_load(&cfg, &src6, &err), WH_ECONFIG);
        ASSERT_STREQ(err.msg, "root directory /etc/hostname: Not a directory");
    }
    ASSERT(cfg == NULL);
}

static void test_parse_env_name(void) {
    unsetenv("WORKERHOST_ENV");
    wh_config *cfg = NULL;
    ASSERT_EQ_INT(wh_config_parse(&cfg, NAME, "", 0, "/app", NULL, &err), 0);
    ASSERT_STREQ(cfg->env, "development");
    ASSERT(cfg->reload);
    wh_config_free(cfg);
    cfg = NULL;
    ASSERT_EQ_INT(wh_config_parse(&cfg, NAME, "", 0, "/app", "a.b", &err), WH_ECONFIG);
    ASSERT_STREQ(err.msg, "invalid environment name \"a.b\": use only letters, digits, \"_\" and \"-\"");
    ASSERT_EQ_INT(wh_config_parse(&cfg, NAME, "", 0, "/app", "Prod_2-eu", &err), 0);
    ASSERT_STREQ(cfg->env, "Prod_2-eu");
    wh_config_free(cfg);
    /* err may be NULL */
    cfg = NULL;
    ASSERT_EQ_INT(wh_config_parse(&cfg, NAME, "x: 1", 4, "/app", "t", NULL), WH_ECONFIG);
    ASSERT(cfg == NULL);
}

int main(void) {
    RUN(test_defaults_from_empty_text);
    RUN(test_reload_default_depends_on_env);
    RUN(test_defaults_function);
    RUN(test_every_key);
    RUN(test_integer_errors);
    RUN(test_unknown_key_and_section);
    RUN(test_shape_errors);
    RUN(test_mode_and_enums);
    RUN(test_booleans);
    RUN(test_sizes);
    RUN(test_seconds);
    RUN(test_strings_and_paths);
    RUN(test_queues);
    RUN(test_env_substitution);
    RUN(test_uri_password_redacted);
    RUN(test_secret_env);
    RUN(test_yaml_errors);
    RUN(test_duplicates);
    RUN(test_aliases);
    RUN(test_load_files);
    RUN(test_parse_env_name);
    return TEST_REPORT();
}
