/* reload.c -- the reload status file under <root>/tmp, and `workerhost
 * reload`.
 *
 *   tmp/workerhost.pid     the pid of `workerhost run` (cli/pidfile.h)
 *   tmp/workerhost.reload  the last reload attempt, whatever triggered it:
 *                            attempt N        (counts attempts since start)
 *                            generation G     (the code new jobs run on)
 *                            reloaded_at T    (epoch seconds, 0 = never)
 *                            status ok|error
 *                            message ...      (the error: file:line: ...)
 *
 * `workerhost reload` reads the pid file, checks that the process is a
 * workerhost, sends it SIGHUP and waits for the next attempt in the status
 * file, so it can say whether the reload worked. In BackgroundQueue mode it
 * also pushes RELOAD onto the `<identity>-signals` list of every other
 * workerhost process registered on the same Redis (Sidekiq's control
 * channel, which the Web UI uses for TSTP and TERM); each host reads its
 * list every second and reloads. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/pidfile.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "redis/client.h"
#include "redis/server.h"
#include "cli/queue_cmds.h"

void wh_cli_reload_status(const wh_config *cfg, unsigned attempt, wh_host *h, int rc, const char *message) {
    char *path = wh_cli_tmp_path(cfg->root, "workerhost.reload");
    wh_buf b = WH_BUF_INIT;
    wh_buf_printf(&b, "attempt %u\ngeneration %u\nreloaded_at %.3f\nstatus %s\n", attempt, wh_host_generation(h),
                  wh_host_reloaded_at(h), rc == 0 ? "ok" : "error");
    if (rc && message) {
        wh_buf_puts(&b, "message ");
        for (const char *p = message; *p; p++) wh_buf_putc(&b, *p == '\n' ? ' ' : *p);
        wh_buf_putc(&b, '\n');
    }
    if (wh_cli_write_atomic(path, wh_buf_cstr(&b)) != 0)
        wh_log(WH_LOG_WARN, NULL, NULL, "cannot write %s: %s", path, strerror(errno));
    wh_buf_free(&b);
    wh_free(path);
}

/* ---- workerhost reload ---- */

typedef struct status {
    unsigned attempt, generation;
    double reloaded_at;
    char state[16];
    char message[2048];
} status;

static bool read_status(const char *path, status *s) {
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    char line[2100];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "attempt ", 8) == 0) s->attempt = (unsigned)strtoul(line + 8, NULL, 10);
        else if (strncmp(line, "generation ", 11) == 0) s->generation = (unsigned)strtoul(line + 11, NULL, 10);
        else if (strncmp(line, "reloaded_at ", 12) == 0) s->reloaded_at = strtod(line + 12, NULL);
        else if (strncmp(line, "status ", 7) == 0) snprintf(s->state, sizeof s->state, "%.15s", line + 7);
        else if (strncmp(line, "message ", 8) == 0) snprintf(s->message, sizeof s->message, "%.2040s", line + 8);
    }
    fclose(f);
    return true;
}

static bool exe_base(const char *link, char *out, size_t n) {
    char exe[4096];
    ssize_t k = readlink(link, exe, sizeof exe - 1);
    if (k < 0) return false;
    exe[k] = '\0';
    const char *base = strrchr(exe, '/');
    snprintf(out, n, "%.255s", base ? base + 1 : exe);
    return true;
}

/* /proc/PID/comm (the program's name, cut to 15 bytes) into out. */
static bool comm_of(long pid, char *out, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    bool ok = fgets(out, (int)n, f) != NULL;
    fclose(f);
    if (ok) out[strcspn(out, "\n")] = '\0';
    return ok;
}

/* True when pid runs the workerhost program (Linux: /proc/PID/exe is named
 * workerhost*, or as this program is), so a stale pid file never gets an
 * unrelated process signalled. A running host is not dumpable (see
 * wh_cli_config_loaded), so unless we are root its exe link cannot be read:
 * then its comm, the name cut to 15 bytes, is compared. */
static bool is_workerhost(long pid) {
    char link[64], base[256], self[256];
    size_t cmp = sizeof base;
    snprintf(link, sizeof link, "/proc/%ld/exe", pid);
    if (!exe_base(link, base, sizeof base)) {
        if (errno != EACCES || !comm_of(pid, base, sizeof base))
            return access("/proc/self/exe", F_OK) != 0; /* no /proc: trust it */
        cmp = 15;
    }
    if (strncmp(base, "workerhost", 10) == 0) return true;
    return exe_base("/proc/self/exe", self, sizeof self) && strncmp(base, self, cmp) == 0;
}

static void print_status(const status *s) {
    if (s->reloaded_at > 0) {
        time_t t = (time_t)s->reloaded_at;
        struct tm tm;
        char when[64];
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("generation %u, last reload %s\n", s->generation, when);
    } else {
        printf("generation %u, not reloaded since it started\n", s->generation);
    }
}

bool wh_cli_local_host(const char *root, long *pid, unsigned *generation, double *reloaded_at) {
    char *pidpath = wh_cli_tmp_path(root, "workerhost.pid");
    char *statpath = wh_cli_tmp_path(root, "workerhost.reload");
    long p = wh_pidfile_read(pidpath);
    bool alive = p > 0 && kill((pid_t)p, 0) == 0 && is_workerhost(p);
    status st;
    if (alive) {
        *pid = p;
        if (read_status(statpath, &st)) {
            *generation = st.generation;
            *reloaded_at = st.reloaded_at;
        } else {
            *generation = 1;
            *reloaded_at = 0;
        }
    }
    wh_free(pidpath);
    wh_free(statpath);
    return alive;
}

/* BackgroundQueue: RELOAD to every other workerhost on the same Redis.
 * Returns 0 (and *sent), or 5 with the error printed. */
static int reload_fleet(const wh_config *cfg, long local_pid, size_t *sent) {
    wh_redis_client *c = NULL;
    wh_err err = WH_ERR_INIT;
    int rc = wh_cli_redis_connect(cfg, &c, &err);
    char skip[288] = "";
    if (local_pid > 0) wh_rserver_identity_prefix(local_pid, skip, sizeof skip); /* signalled already */
    if (rc == 0) rc = wh_redis_client_signal_all(c, "RELOAD", "workerhost", skip[0] ? skip : NULL, sent, &err);
    if (rc == 0)
        printf("sent RELOAD to %zu %sworkerhost process%s on %s (each reloads within about a second; "
               "`workerhost stats` shows their generation)\n", *sent, local_pid > 0 ? "other " : "",
               *sent == 1 ? "" : "es", wh_redis_client_uri_shown(c));
    else
        fprintf(stderr, "workerhost reload: %s\n", err.msg);
    wh_redis_client_free(c);
    return rc ? 5 : 0;
}

int wh_cli_reload(const wh_cli *cli) {
    bool status_only = false, local_only = false;
    double wait = 60;
    for (int i = 1; i < cli->nwords; i++) {
        if (strcmp(cli->words[i], "--status") == 0) status_only = true;
        else if (strcmp(cli->words[i], "--local") == 0) local_only = true;
        else if (strcmp(cli->words[i], "--no-wait") == 0) wait = 0;
        else return wh_cli_usage_error("reload", "unexpected argument %s", cli->words[i]);
    }
    if (cli->help) {
        printf("usage: workerhost reload [--root DIR] [--local] [--no-wait | --status]\n\n"
               "Makes the `workerhost run` of this app root (found by <root>/tmp/workerhost.pid) load its\n"
               "worker scripts and app modules again (the same as sending it SIGHUP), and waits up to 60 s\n"
               "to print the outcome: the new generation, or the error with file and line (the host then\n"
               "keeps running the code it had; exit status 2). The YAML configuration is not read again.\n"
               "--no-wait only sends the signal; --status prints the running host's generation and last\n"
               "reload without reloading.\n\n"
               "BackgroundQueue: also reaches every other workerhost process on the same Redis, by pushing\n"
               "RELOAD onto its <identity>-signals list (read every second); it does not wait for them\n"
               "(see `workerhost stats`). --local: only the host of this app root. Exit status 5 when no\n"
               "host was reached.\n");
        return 0;
    }
    wh_config_source src = {cli->root, cli->env, cli->config};
    wh_config *cfg = NULL;
    wh_err cerr = WH_ERR_INIT;
    if (wh_config_load(&cfg, &src, &cerr) != 0) cfg = wh_config_defaults(cli->root, cli->env); /* local only */
    wh_cli_config_loaded(cfg);
    bool fleet = !local_only && !status_only && cfg->mode == WH_MODE_BACKGROUND_QUEUE;
    char *pidpath = wh_cli_tmp_path(cfg->root, "workerhost.pid");
    char *statpath = wh_cli_tmp_path(cfg->root, "workerhost.reload");
    int rc = 0;
    long pid = wh_pidfile_read(pidpath);
    status before, after;
    if (pid <= 0) {
        if (!fleet)
            fprintf(stderr, "workerhost reload: no running host found: cannot read a pid from %s "
                            "(is `workerhost run` running in this app root?)\n", pidpath);
        rc = 5;
        pid = 0;
    } else if (kill((pid_t)pid, 0) != 0 || !is_workerhost(pid)) {
        fprintf(stderr, "workerhost reload: %s names pid %ld, which is not a running workerhost "
                        "(a stale pid file?)\n", pidpath, pid);
        rc = 5;
        pid = 0;
    } else if (status_only) {
        if (read_status(statpath, &before)) {
            printf("workerhost pid %ld: ", pid);
            print_status(&before);
        } else {
            printf("workerhost pid %ld: generation 1, not reloaded since it started\n", pid);
        }
    } else {
        if (!read_status(statpath, &before)) before.attempt = 0;
        if (kill((pid_t)pid, SIGHUP) != 0) {
            fprintf(stderr, "workerhost reload: cannot signal pid %ld: %s\n", pid, strerror(errno));
            rc = 5;
        } else if (wait == 0) {
            printf("sent SIGHUP to workerhost pid %ld\n", pid);
        } else {
            double until = wh_clock_monotonic() + wait;
            bool seen = false;
            while (!seen && wh_clock_monotonic() < until) {
                usleep(20000);
                seen = read_status(statpath, &after) && after.attempt != before.attempt;
            }
            if (!seen) {
                fprintf(stderr, "workerhost reload: sent SIGHUP to pid %ld, but no outcome in %s within %.0f s "
                                "(see the host's log)\n", pid, statpath, wait);
                rc = 5;
            } else if (strcmp(after.state, "ok") == 0) {
                printf("reloaded workerhost pid %ld: ", pid);
                print_status(&after);
            } else {
                fprintf(stderr, "workerhost reload: reload failed, generation %u keeps running: %s\n",
                        after.generation, after.message);
                rc = 2;
            }
        }
    }
    if (fleet) {
        size_t sent = 0;
        int frc = reload_fleet(cfg, pid, &sent);
        if (rc == 5 && frc == 0 && sent > 0) rc = 0; /* no local host, but the fleet was reached */
        else if (rc == 5 && frc == 0 && sent == 0)
            fprintf(stderr, "workerhost reload: no running host found, here or on its Redis\n");
        else if (rc == 0 && frc) rc = frc;
    }
    wh_free(pidpath);
    wh_free(statpath);
    wh_config_free(cfg);
    return rc;
}
