/* generate.c -- workerhost generate worker NAME: a worker script and its
 * spec, from templates that pass as generated. Never overwrites. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/mem.h"
#include "lua/lworker.h"

static const char *const help =
    "usage: workerhost generate worker NAME\n"
    "\n"
    "Writes <scripts>/NAME.lua (a worker with one string argument) and\n"
    "spec/workers/NAME_spec.lua (a busted spec for it), relative to the app root.\n"
    "NAME is snake_case (report_worker) or CamelCase (ReportWorker). Refuses to overwrite.\n";

/* ReportWorker -> report_worker; report_worker stays. */
static void snake(const char *in, char *out, size_t n) {
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 2 < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (isupper(c)) {
            if (i > 0 && in[i - 1] != '_') out[o++] = '_';
            out[o++] = (char)tolower(c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static int mkdirs(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* Creates path with the text; fails if it exists (O_EXCL). */
static int write_new(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return -1;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w <= 0) { close(fd); unlink(path); return -1; }
        off += (size_t)w;
    }
    return close(fd);
}

int wh_cli_generate(const wh_cli *cli) {
    if (cli->help) { fputs(help, stdout); return 0; }
    if (cli->nwords < 2 || strcmp(cli->words[1], "worker") != 0)
        return wh_cli_usage_error("generate", "expected: generate worker NAME");
    if (cli->nwords != 3) return wh_cli_usage_error("generate", "expected: generate worker NAME");
    const char *name = cli->words[2];
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return wh_cli_usage_error("generate", "NAME may hold letters, digits and _ only, not %s", name);
    char file[256], cls[256];
    snake(name, file, sizeof file);
    wh_lworker_name_from_file(file, cls, sizeof cls);
    if (!isalpha((unsigned char)file[0]) || !wh_lworker_valid_name(cls))
        return wh_cli_usage_error("generate", "NAME must start with a letter, not %s", name);

    wh_config *cfg = NULL;
    wh_err err = WH_ERR_INIT;
    wh_config_source src = {cli->root, cli->env, cli->config};
    if (wh_config_load(&cfg, &src, &err) != 0) {
        fprintf(stderr, "workerhost: %s\n", err.msg);
        return 2;
    }
    wh_cli_config_loaded(cfg);
    wh_buf wpath = WH_BUF_INIT, spath = WH_BUF_INIT, sdir = WH_BUF_INIT, wtext = WH_BUF_INIT, stext = WH_BUF_INIT;
    wh_buf_printf(&wpath, "%s/%s.lua", cfg->scripts_dir, file);
    wh_buf_printf(&sdir, "%s/spec/workers", cfg->root);
    wh_buf_printf(&spath, "%s/%s_spec.lua", wh_buf_cstr(&sdir), file);
    wh_buf_printf(&wtext,
        "local wh = require \"workerhost\"\n"
        "\n"
        "-- %s: describe what this job does.\n"
        "return wh.worker {\n"
        "  queue = \"default\",\n"
        "  retry = 25,\n"
        "  timeout = 30,\n"
        "  args = {\n"
        "    user_guid = \"string\",\n"
        "  },\n"
        "  perform = function(args, job)\n"
        "    wh.log.info(\"%s performing for user \" .. args.user_guid)\n"
        "  end,\n"
        "}\n", cls, cls);
    wh_buf_printf(&stext,
        "local testing = require \"workerhost.testing\"\n"
        "\n"
        "describe(\"%s\", function()\n"
        "  local app\n"
        "  before_each(function()\n"
        "    app = testing.app { only = { \"%s.lua\" } }\n"
        "  end)\n"
        "  after_each(function() app:close() end)\n"
        "\n"
        "  it(\"performs\", function()\n"
        "    local jid, ok, err = app:perform_later(\"%s\", { user_guid = \"guid-1\" })\n"
        "    assert.is_true(ok, err)\n"
        "    assert.are.equal(24, #jid)\n"
        "  end)\n"
        "\n"
        "  it(\"refuses arguments of the wrong type before perform runs\", function()\n"
        "    assert.has_error(function()\n"
        "      app:perform_later(\"%s\", { user_guid = 42 })\n"
        "    end, \"wh.enqueue: %s: args.user_guid: expected string, got integer\")\n"
        "  end)\n"
        "end)\n", cls, file, cls, cls, cls);

    int rc = 0;
    struct stat st;
    if (stat(wh_buf_cstr(&wpath), &st) == 0 || stat(wh_buf_cstr(&spath), &st) == 0) {
        fprintf(stderr, "workerhost generate: %s already exists; not overwriting\n",
                stat(wh_buf_cstr(&wpath), &st) == 0 ? wh_buf_cstr(&wpath) : wh_buf_cstr(&spath));
        rc = 2;
    } else if (mkdirs(cfg->scripts_dir) != 0 || mkdirs(wh_buf_cstr(&sdir)) != 0) {
        fprintf(stderr, "workerhost generate: cannot create folders: %s\n", strerror(errno));
        rc = 2;
    } else if (write_new(wh_buf_cstr(&wpath), wh_buf_cstr(&wtext)) != 0) {
        fprintf(stderr, "workerhost generate: %s: %s\n", wh_buf_cstr(&wpath), strerror(errno));
        rc = 2;
    } else if (write_new(wh_buf_cstr(&spath), wh_buf_cstr(&stext)) != 0) {
        fprintf(stderr, "workerhost generate: %s: %s\n", wh_buf_cstr(&spath), strerror(errno));
        unlink(wh_buf_cstr(&wpath));
        rc = 2;
    } else {
        printf("created %s (worker %s)\ncreated %s\n", wh_buf_cstr(&wpath), cls, wh_buf_cstr(&spath));
    }
    wh_buf_free(&wpath); wh_buf_free(&spath); wh_buf_free(&sdir); wh_buf_free(&wtext); wh_buf_free(&stext);
    wh_config_free(cfg);
    return rc;
}
