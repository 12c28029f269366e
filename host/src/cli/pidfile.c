/* pidfile.c -- see pidfile.h. */
#include "cli/pidfile.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"

long wh_pidfile_read(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    long pid = -1;
    if (fscanf(f, "%ld", &pid) != 1) pid = -1;
    fclose(f);
    return pid;
}

char *wh_pidfile_write(const wh_config *cfg) {
    wh_buf d = WH_BUF_INIT;
    wh_buf_printf(&d, "%s/tmp", cfg->root);
    mkdir(wh_buf_cstr(&d), 0755);
    wh_buf_free(&d);
    char *path = wh_cli_tmp_path(cfg->root, "workerhost.pid");
    long other = wh_pidfile_read(path);
    if (other > 0 && other != (long)getpid() && kill((pid_t)other, 0) == 0)
        wh_log(WH_LOG_WARN, NULL, NULL, "%s names pid %ld, which is alive; overwriting it (another workerhost "
               "in this app root is no longer reachable by `workerhost reload`)", path, other);
    char text[32];
    snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (wh_cli_write_atomic(path, text) != 0) {
        wh_log(WH_LOG_WARN, NULL, NULL, "cannot write %s: %s (`workerhost reload` will not find this host)", path,
               strerror(errno));
        wh_free(path);
        return NULL;
    }
    return path;
}

void wh_pidfile_remove(char *path) {
    if (path == NULL) return;
    if (wh_pidfile_read(path) == (long)getpid()) unlink(path);
    wh_free(path);
}

