/* main.c -- the workerhost command. The only file that calls exit().
 *
 *   workerhost [--root DIR] [--env NAME] [--config FILE] COMMAND ...
 *
 * Global options may come before or after the command's name. Exit
 * statuses: 0 success, 1 the job failed, 2 usage/configuration/script error,
 * 3 arguments refused, 4 unknown class, 5 backend unavailable or queue full. */
#include <errno.h>
#include <signal.h>
#include <lua.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <yaml.h>
#include <hiredis/hiredis.h>
#include <yajl/yajl_version.h>

#include "app/catalog.h"
#include "app/host.h"
#include "cli/cli.h"
#include "cli/queue_cmds.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "lua/lworker.h"

static const char *const usage_text =
    "usage: workerhost [--root DIR] [--env NAME] [--config FILE] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run                       run the host in the configured mode until SIGINT/SIGTERM\n"
    "  enqueue CLASS ARGS_JSON   enqueue one job (see workerhost enqueue --help)\n"
    "  check                     load every worker script and print the workers\n"
    "  generate worker NAME      write workers/NAME.lua and spec/workers/NAME_spec.lua\n"
    "  stats [--json]            Redis at queue.uri: counts, queues, processes\n"
    "  reload [--status]         make the running host (tmp/workerhost.pid) reload its worker scripts\n"
    "  version                   print the version\n"
    "\n"
    "global options (before or after the command):\n"
    "  --root DIR         the app root, holding config/ and workers/ (default: .)\n"
    "  --env NAME         config/NAME.yaml (default: $WORKERHOST_ENV, else development)\n"
    "  --config FILE      read this config file instead (paths in it stay relative to the root)\n"
    "  --log-format FMT   text (default) or json\n"
    "  --log-level LEVEL  debug, info, warn or error\n"
    "\n"
    "exit status: 0 success, 1 the job failed, 2 usage, configuration or script error,\n"
    "3 arguments refused, 4 unknown class, 5 backend unavailable or queue full\n";

/* Splits argv into global options and the rest (command and its words). */
static int parse_globals(int argc, char **argv, wh_cli *cli) {
    memset(cli, 0, sizeof *cli);
    cli->words = wh_xcalloc((size_t)argc + 1, sizeof *cli->words);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        const char *names[] = {"--root", "--env", "--config", "--log-format", "--log-level"};
        const char **slots[] = {&cli->root, &cli->env, &cli->config, &cli->log_format, &cli->log_level};
        for (size_t k = 0; k < 5; k++) {
            size_t n = strlen(names[k]);
            if (strncmp(a, names[k], n) == 0 && (a[n] == '\0' || a[n] == '=')) {
                slot = slots[k];
                if (a[n] == '=') {
                    *slot = a + n + 1;
                } else if (i + 1 < argc) {
                    *slot = argv[++i];
                } else {
                    return wh_cli_usage_error(NULL, "%s needs a value", names[k]);
                }
                break;
            }
        }
        if (slot) continue;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { cli->help = true; continue; }
        if (strcmp(a, "--") == 0) { /* the rest are plain words */
            for (i++; i < argc; i++) cli->words[cli->nwords++] = argv[i];
            break;
        }
        cli->words[cli->nwords++] = a;
    }
    wh_log_level lvl = WH_LOG_INFO;
    wh_log_format fmt = WH_LOG_TEXT;
    if (cli->log_level && wh_log_parse_level(cli->log_level, &lvl) != 0)
        return wh_cli_usage_error(NULL, "--log-level must be debug, info, warn or error, not %s", cli->log_level);
    if (cli->log_format && wh_log_parse_format(cli->log_format, &fmt) != 0)
        return wh_cli_usage_error(NULL, "--log-format must be text or json, not %s", cli->log_format);
    wh_log_setup(lvl, fmt);
    return 0;
}

static int cmd_version(const wh_cli *cli) {
    if (cli->help) { printf("usage: workerhost version\n"); return 0; }
    printf("workerhost %s (%s, libuv %s, hiredis %d.%d.%d, yajl %d.%d.%d, libyaml %s)\n", WORKERHOST_VERSION,
           LUA_RELEASE, uv_version_string(), HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, YAJL_MAJOR,
           YAJL_MINOR, YAJL_MICRO, yaml_get_version_string());
    return 0;
}

static int cmd_check(const wh_cli *cli) {
    if (cli->help) {
        printf("usage: workerhost check [--root DIR] [--env NAME] [--config FILE]\n\n"
               "Loads the configuration and every worker script, and prints each worker with its\n"
               "queue, retry, timeout and argument schema. On any error prints file:line and exits 2.\n");
        return 0;
    }
    if (cli->nwords > 1) return wh_cli_usage_error("check", "unexpected argument %s", cli->words[1]);
    wh_host *h;
    int rc = wh_cli_open_host(cli, NULL, &h);
    if (rc) return rc;
    const wh_catalog *cat = wh_host_catalog(h);
    const wh_config *cfg = wh_host_config(h);
    printf("%s: %s mode, %zu worker%s from %s\n\n", cfg->file, wh_mode_name(cfg->mode), wh_catalog_count(cat),
           wh_catalog_count(cat) == 1 ? "" : "s", cfg->scripts_dir);
    size_t wname = 6, wqueue = 5, wfile = 4;
    for (size_t i = 0; i < wh_catalog_count(cat); i++) {
        const wh_worker_def *d = wh_catalog_at(cat, i);
        if (strlen(d->name) > wname) wname = strlen(d->name);
        if (strlen(d->queue) > wqueue) wqueue = strlen(d->queue);
        if (strlen(d->file) > wfile) wfile = strlen(d->file);
    }
    printf("%-*s  %-*s  %-5s  %-7s  %-*s  %s\n", (int)wname, "WORKER", (int)wqueue, "QUEUE", "RETRY", "TIMEOUT",
           (int)wfile, "FILE", "ARGS");
    for (size_t i = 0; i < wh_catalog_count(cat); i++) {
        const wh_worker_def *d = wh_catalog_at(cat, i);
        char retry[16], timeout[32];
        if (d->retry == WH_RETRY_FALSE) snprintf(retry, sizeof retry, "false");
        else snprintf(retry, sizeof retry, "%d", d->retry);
        snprintf(timeout, sizeof timeout, "%gs", d->timeout);
        wh_buf args = WH_BUF_INIT;
        wh_schema_describe(d->schema, &args);
        printf("%-*s  %-*s  %-5s  %-7s  %-*s  %s\n", (int)wname, d->name, (int)wqueue, d->queue, retry, timeout,
               (int)wfile, d->file, wh_buf_cstr(&args));
        wh_buf_free(&args);
    }
    wh_host_free(h);
    return 0;
}

static int cmd_run(const wh_cli *cli) {
    if (cli->help) {
        printf("usage: workerhost run [--root DIR] [--env NAME] [--config FILE]\n\n"
               "Runs the host in the configured mode (workers.mode) until SIGINT or SIGTERM.\n");
        return 0;
    }
    if (cli->nwords > 1) return wh_cli_usage_error("run", "unexpected argument %s", cli->words[1]);
    wh_host *h;
    int rc = wh_cli_open_host(cli, NULL, &h);
    if (rc) return rc;
    rc = wh_cli_run_host(h);
    wh_host_free(h);
    return rc;
}

int main(int argc, char **argv) {
    /* Redis may close a connection at any time (CLIENT KILL, a timeout, a
     * failover): a write to it must be EPIPE, not a silent death (the
     * library also blocks SIGPIPE on its own threads: core/sigpipe.h) */
    signal(SIGPIPE, SIG_IGN);
    wh_cli cli;
    int rc = parse_globals(argc, argv, &cli);
    if (rc == 0) {
        const char *cmd = cli.nwords ? cli.words[0] : NULL;
        if (cmd == NULL) {
            if (cli.help) { fputs(usage_text, stdout); rc = 0; }
            else { fputs(usage_text, stderr); rc = EXIT_USAGE; }
        } else if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) rc = cmd_version(&cli);
        else if (strcmp(cmd, "check") == 0) rc = cmd_check(&cli);
        else if (strcmp(cmd, "run") == 0) rc = cmd_run(&cli);
        else if (strcmp(cmd, "enqueue") == 0) rc = wh_cli_enqueue(&cli);
        else if (strcmp(cmd, "stats") == 0) rc = wh_cli_stats(&cli);
        else if (strcmp(cmd, "reload") == 0) rc = wh_cli_reload(&cli);
        else if (strcmp(cmd, "generate") == 0) rc = wh_cli_generate(&cli);
        else if (strcmp(cmd, "help") == 0) { fputs(usage_text, stdout); rc = 0; }
        else rc = wh_cli_usage_error(NULL, "unknown command %s", cmd);
    }
    wh_free(cli.words);
    exit(rc);
}
