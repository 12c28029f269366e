/* cli.c -- the helpers the workerhost command's subcommands share; see
 * cli.h. */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "app/host.h"
#include "core/buf.h"
#include "core/log.h"

int wh_cli_exit_status(int rc) {
    switch (rc) {
    case WH_OK: return 0;
    case WH_EJOB: case WH_ETIMEOUT: case WH_ENOMEM: return EXIT_JOB;
    case WH_EARGS: case WH_EJSON: return EXIT_ARGS;
    case WH_ENOCLASS: return EXIT_CLASS;
    case WH_EUNAVAIL: case WH_EFULL: return EXIT_UNAVAIL;
    default: return EXIT_USAGE;
    }
}

int wh_cli_usage_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "workerhost%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see workerhost %s--help)\n", cmd ? "COMMAND " : "");
    return EXIT_USAGE;
}

void wh_cli_config_loaded(const wh_config *cfg) {
    for (size_t i = 0; cfg->secret_env && cfg->secret_env[i]; i++) unsetenv(cfg->secret_env[i]);
    if (!cfg->allow_core_dumps && prctl(PR_SET_DUMPABLE, 0L, 0L, 0L, 0L) != 0)
        wh_log(WH_LOG_WARN, NULL, NULL, "cannot make the process non-dumpable: %s", strerror(errno));
}

int wh_cli_open_host(const wh_cli *cli, const wh_mode *mode, wh_host **out) {
    wh_host_options o = {cli->root, cli->env, cli->config};
    wh_err err = WH_ERR_INIT;
    int rc = wh_host_new_mode(out, &o, mode, &err);
    if (rc) {
        fprintf(stderr, "workerhost: %s\n", err.msg);
        return EXIT_USAGE;
    }
    wh_cli_config_loaded(wh_host_config(*out));
    /* the config's logger settings, unless given on the command line */
    const wh_config *cfg = wh_host_config(*out);
    wh_log_level lvl = cfg->log_level;
    wh_log_format fmt = cfg->log_format;
    if (cli->log_level) wh_log_parse_level(cli->log_level, &lvl);
    if (cli->log_format) wh_log_parse_format(cli->log_format, &fmt);
    wh_log_setup(lvl, fmt);
    return 0;
}

char *wh_cli_tmp_path(const char *root, const char *name) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_printf(&b, "%s/tmp/%s", root, name);
    return wh_buf_steal(&b);
}

int wh_cli_write_atomic(const char *path, const char *text) {
    wh_buf t = WH_BUF_INIT;
    wh_buf_printf(&t, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(wh_buf_cstr(&t), "w");
    int rc = -1;
    if (f) {
        bool ok = fputs(text, f) >= 0;
        ok = fclose(f) == 0 && ok;
        rc = ok && rename(wh_buf_cstr(&t), path) == 0 ? 0 : -1;
        if (rc) unlink(wh_buf_cstr(&t));
    }
    wh_buf_free(&t);
    return rc;
}
