/* redis_server.h -- a throwaway redis-server for tests (hiredis's test.sh,
 * in C). Header-only, static inline (unused ones cost nothing): include it in any test.
 * SPDX-License-Identifier: MIT
 *
 *   wh_test_redis r;
 *   const char *extra[] = {"--requirepass", "secret", NULL};
 *   if (wh_test_redis_start(&r, extra) != 0) ... skip or fail ...
 *   ... connect to 127.0.0.1:r.port ...
 *   wh_test_redis_stop(&r);
 *
 * Each server gets a free loopback port (bind 127.0.0.1:0, read the port,
 * close; retried on the rare race with another process), its own temporary
 * directory (removed at stop), no persistence (--save "" --appendonly no,
 * unless extra arguments say otherwise: later arguments win), and is
 * stopped by its PID only. It dies with the test process (PR_SET_PDEATHSIG),
 * so a crashed test leaves no server behind. Never a fixed port. */
#ifndef WH_TEST_REDIS_SERVER_H
#define WH_TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h" /* wh_test_rm_tree */

typedef struct wh_test_redis {
    pid_t pid;      /* 0 when not running */
    int port;
    char dir[128];  /* its temporary directory (--dir), with redis.log */
} wh_test_redis;

/* The redis-server binary: $REDIS_SERVER, else "redis-server" on PATH. */
static inline const char *wh_test_redis_binary(void) {
    const char *b = getenv("REDIS_SERVER");
    return b && *b ? b : "redis-server";
}

/* True when a redis-server can be run (tests that need one skip otherwise). */
static inline bool wh_test_redis_available(void) {
    const char *b = wh_test_redis_binary();
    if (strchr(b, '/')) return access(b, X_OK) == 0;
    const char *path = getenv("PATH");
    if (path == NULL) return false;
    char buf[4096];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, b);
        if (access(buf, X_OK) == 0) return true;
        p += n + (e ? 1 : 0);
    }
    return false;
}

static inline void wh_test_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* A port nobody listens on right now (0 on failure). */
static inline int wh_test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Stops the server (SIGTERM, then SIGKILL after 5 s), reaps it and removes
 * its directory. Safe to call twice. */
static inline void wh_test_redis_stop(wh_test_redis *r) {
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        int status;
        for (int i = 0; i < 500; i++) {
            pid_t w = waitpid(r->pid, &status, WNOHANG);
            if (w == r->pid || (w < 0 && errno == ECHILD)) {
                r->pid = 0;
                break;
            }
            wh_test_sleep_ms(10);
        }
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &status, 0);
            r->pid = 0;
        }
    }
    if (r->dir[0]) wh_test_rm_tree(r->dir);
    r->dir[0] = '\0';
}

/* Pauses (SIGSTOP) or resumes (SIGCONT) the server: a stalled server for
 * timeout tests. */
static inline void wh_test_redis_pause(wh_test_redis *r, bool pause) {
    if (r->pid > 0) kill(r->pid, pause ? SIGSTOP : SIGCONT);
}

/* True once our server is ready: its own log (in our --dir, so no other
 * server's) says it accepts connections, and the port answers anything (a
 * PING's NOAUTH error counts: the server is up). */
static inline bool wh_test_redis_answers(const wh_test_redis *r) {
    char log[192];
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    FILE *f = fopen(log, "r");
    if (f == NULL) return false;
    size_t cap = 1 << 16;
    char *text = malloc(cap);
    size_t n = text ? fread(text, 1, cap - 1, f) : 0;
    fclose(f);
    if (text == NULL) return false;
    text[n] = '\0';
    bool ready = strstr(text, "Ready to accept connections") != NULL;
    free(text);
    if (!ready) return false;
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    bool up = false;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *rep = redisCommand(c, "PING");
        up = rep != NULL;
        if (rep) freeReplyObject(rep);
    }
    if (c) redisFree(c);
    return up;
}

/* Starts a server; extra: NULL, or a NULL-terminated list of extra
 * arguments ("--requirepass", "pw", ...). Returns 0 with *r filled, or -1
 * (the server log is printed to stderr). */
static inline int wh_test_redis_start(wh_test_redis *r, const char *const *extra) {
    memset(r, 0, sizeof *r);
    for (int attempt = 0; attempt < 10; attempt++) {
        snprintf(r->dir, sizeof r->dir, "/tmp/wh-test-redis-XXXXXX");
        if (mkdtemp(r->dir) == NULL) {
            perror("mkdtemp");
            r->dir[0] = '\0';
            return -1;
        }
        r->port = wh_test_free_port();
        if (r->port == 0) {
            wh_test_rm_tree(r->dir);
            r->dir[0] = '\0';
            continue;
        }
        char port[16], log[192];
        snprintf(port, sizeof port, "%d", r->port);
        snprintf(log, sizeof log, "%s/redis.log", r->dir);
        const char *argv[64] = {wh_test_redis_binary(), "--port", port, "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", r->dir, "--daemonize", "no", "--logfile", log};
        int argc = 15;
        for (int i = 0; extra && extra[i] && argc < 63; i++) argv[argc++] = extra[i];
        argv[argc] = NULL;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            wh_test_rm_tree(r->dir);
            r->dir[0] = '\0';
            return -1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(127);
            int devnull = open("/dev/null", O_RDWR);
            if (devnull >= 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
            }
            execvp(argv[0], (char *const *)argv);
            _exit(127);
        }
        r->pid = pid;
        bool died = false;
        for (int i = 0; i < 500; i++) { /* up to 5 s */
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                died = true;
                r->pid = 0;
                break;
            }
            if (wh_test_redis_answers(r)) return 0;
            wh_test_sleep_ms(10);
        }
        /* it died (most likely the port was taken meanwhile) or hangs: retry */
        char cmd[256];
        snprintf(cmd, sizeof cmd, "tail -n 5 %s/redis.log >&2", r->dir);
        if (!died) fprintf(stderr, "redis-server did not answer on port %d; its log:\n", r->port);
        if (!died || attempt == 9) {
            if (system(cmd) != 0) {}
        }
        wh_test_redis_stop(r);
    }
    fprintf(stderr, "could not start %s\n", wh_test_redis_binary());
    return -1;
}

#endif
