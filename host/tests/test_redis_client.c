/* test_redis_client.c -- redis/uri.c and redis/client.c: URI forms and
 * redaction; connecting (refused, timed out, AUTH with requirepass and ACL
 * users, SELECT, namespaces, the version key); pushes in Sidekiq's exact
 * shape (single, scheduled, pipelined bulk); stats against a known state.
 * SPDX-License-Identifier: MIT
 *
 * The URI tests need nothing. The others start their own redis-server on a
 * free loopback port (host/tests/redis_server.h) and are skipped, with a
 * message, when no redis-server is installed. */
#include <math.h>
#include <stdlib.h>

#include "app/catalog.h"
#include "app/job.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/clock.h"
#include "json/json.h"
#include "redis/client.h"
#include "redis/keys.h"
#include "redis/uri.h"
#include "redis_server.h"
#include "test.h"

/* The callers' way to push jobs: each written as it goes to Redis now
 * (wh_job_redis_items), then pushed as plain items. */
static int push_jobs(wh_redis_client *c, wh_job *const *jobs, size_t n, wh_err *err) {
    wh_buf text = WH_BUF_INIT;
    wh_redis_item *items = calloc(n ? n : 1, sizeof *items);
    int rc = wh_job_redis_items(jobs, n, wh_clock_wall(), &text, items, err);
    if (rc == 0) rc = wh_redis_client_push_bulk(c, items, n, err);
    free(items);
    wh_buf_free(&text);
    return rc;
}

static int push_job(wh_redis_client *c, wh_job *job, wh_err *err) {
    wh_buf text = WH_BUF_INIT;
    wh_redis_item item;
    int rc = wh_job_redis_items(&job, 1, wh_clock_wall(), &text, &item, err);
    if (rc == 0) rc = wh_redis_client_push(c, &item, err);
    wh_buf_free(&text);
    return rc;
}

static wh_test_redis srv;      /* plain */
static wh_test_redis auth_srv; /* --requirepass */
static wh_config *cfg;
static wh_catalog *cat;

#define AUTH_PW "hunter2pw"

/* ---- helpers ---- */

static char *uri_of(char *buf, size_t n, const char *userinfo, int port, int db) {
    snprintf(buf, n, "redis://%s127.0.0.1:%d/%d", userinfo, port, db);
    return buf;
}

/* Connects with a URI string; returns the code (the client in *out). */
static int connect_s(const char *uri, const char *ns, double timeout, wh_redis_client **out, wh_err *err) {
    wh_redis_uri u;
    *out = NULL;
    int rc = wh_redis_uri_parse(uri, &u, err);
    if (rc) return rc;
    rc = wh_redis_client_connect(&u, ns, timeout, out, err);
    wh_redis_uri_free(&u);
    return rc;
}

/* A raw hiredis connection to a test server (AUTH when pw is set). */
static redisContext *raw(const wh_test_redis *r, const char *pw, int db) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (c == NULL || c->err) return NULL;
    if (pw) freeReplyObject(redisCommand(c, "AUTH %s", pw));
    if (db) freeReplyObject(redisCommand(c, "SELECT %d", db));
    return c;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return r;
}

static long long cmd_int(redisContext *c, const char *fmt, const char *arg) {
    redisReply *r = redisCommand(c, fmt, arg);
    long long v = r == NULL ? -1 : r->type == REDIS_REPLY_INTEGER ? r->integer
                                 : r->type == REDIS_REPLY_STRING  ? atoll(r->str)
                                                                  : -2;
    if (r) freeReplyObject(r);
    return v;
}

/* An owned copy of a string reply, or NULL. */
static char *cmd_str(redisContext *c, const char *fmt, const char *arg) {
    redisReply *r = redisCommand(c, fmt, arg);
    char *s = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    if (r) freeReplyObject(r);
    return s;
}

static void flushall(void) {
    redisContext *c = raw(&srv, NULL, 0);
    if (c) {
        freeReplyObject(redisCommand(c, "FLUSHALL"));
        redisFree(c);
    }
}

/* A job of a repo example worker, built as wh_host_enqueue builds it. */
static wh_job *make_job(const char *cls, const char *args, const wh_enqueue_options *o) {
    const wh_worker_def *def = wh_catalog_find(cat, cls);
    if (def == NULL) return NULL;
    wh_err err;
    wh_json_doc *doc = wh_json_parse(args, strlen(args), NULL, &err);
    if (doc == NULL || wh_schema_check_call_args(def->schema, wh_json_doc_root(doc), &err) != 0) {
        fprintf(stderr, "make_job: %s\n", err.msg);
        wh_json_doc_free(doc);
        return NULL;
    }
    return wh_job_new(def, doc, wh_json_doc_root(doc), o, wh_clock_wall());
}

static wh_redis_client *plain_client(const char *ns) {
    char u[128];
    wh_redis_client *c;
    wh_err err;
    if (connect_s(uri_of(u, sizeof u, "", srv.port, 0), ns, 2, &c, &err) != 0) {
        fprintf(stderr, "connect: %s\n", err.msg);
        return NULL;
    }
    return c;
}

/* ---- URIs (no server) ---- */

static void test_uri_forms(void) {
    wh_redis_uri u;
    wh_err err;
    ASSERT_EQ_INT(wh_redis_uri_parse("redis://127.0.0.1", &u, &err), 0);
    ASSERT_STREQ(u.host, "127.0.0.1");
    ASSERT_EQ_INT(u.port, 6379);
    ASSERT_EQ_INT(u.db, 0);
    ASSERT(u.user == NULL && u.password == NULL && u.path == NULL);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://redis.example:6380/3", &u, &err), 0);
    ASSERT_STREQ(u.host, "redis.example");
    ASSERT_EQ_INT(u.port, 6380);
    ASSERT_EQ_INT(u.db, 3);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://:secret@h:1/2", &u, &err), 0);
    ASSERT(u.user == NULL);
    ASSERT_STREQ(u.password, "secret");
    ASSERT_EQ_INT(u.port, 1);
    ASSERT_EQ_INT(u.db, 2);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://alice:p%40ss%3Aw%2frd@h/0", &u, &err), 0);
    ASSERT_STREQ(u.user, "alice");
    ASSERT_STREQ(u.password, "p@ss:w/rd");
    ASSERT_STREQ(u.host, "h");
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://a:p@ss@h:7", &u, &err), 0); /* an unescaped '@' in the password */
    ASSERT_STREQ(u.password, "p@ss");
    ASSERT_STREQ(u.host, "h");
    ASSERT_EQ_INT(u.port, 7);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://justapassword@h", &u, &err), 0);
    ASSERT(u.user == NULL);
    ASSERT_STREQ(u.password, "justapassword");
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://[::1]:6390/1", &u, &err), 0);
    ASSERT_STREQ(u.host, "::1");
    ASSERT_EQ_INT(u.port, 6390);
    ASSERT_EQ_INT(u.db, 1);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://[fe80::1]", &u, &err), 0);
    ASSERT_STREQ(u.host, "fe80::1");
    ASSERT_EQ_INT(u.port, 6379);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("redis://h/", &u, &err), 0);
    ASSERT_EQ_INT(u.db, 0);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("unix:///run/redis.sock", &u, &err), 0);
    ASSERT_STREQ(u.path, "/run/redis.sock");
    ASSERT(u.host == NULL);
    ASSERT_EQ_INT(u.db, 0);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("unix:///run/redis.sock?db=4", &u, &err), 0);
    ASSERT_STREQ(u.path, "/run/redis.sock");
    ASSERT_EQ_INT(u.db, 4);
    wh_redis_uri_free(&u);

    ASSERT_EQ_INT(wh_redis_uri_parse("unix://bob:pw@/run/redis.sock?db=1", &u, &err), 0);
    ASSERT_STREQ(u.path, "/run/redis.sock");
    ASSERT_STREQ(u.user, "bob");
    ASSERT_STREQ(u.password, "pw");
    wh_redis_uri_free(&u);
    wh_redis_uri_free(&u); /* twice: harmless */
}

static void test_uri_bad(void) {
    static const struct { const char *uri, *msg; } cases[] = {
        {"", "empty"},
        {"http://h", "unknown scheme"},
        {"rediss://h:6380", "TLS is not supported by this build (hiredis 0.14)"},
        {"redis://", "no host"},
        {"redis://h:0", "port must be a number from 1 to 65535"},
        {"redis://h:65536", "port must be a number from 1 to 65535"},
        {"redis://h:63x", "port must be a number"},
        {"redis://h:", "port must be a number"},
        {"redis://h/x", "database after '/' must be a number"},
        {"redis://h/1/2", "database after '/' must be a number"},
        {"redis://h/0?timeout=1", "query parameters are not supported"},
        {"redis://[::1", "unterminated [IPv6] host"},
        {"redis://[::1]6379", "expected ':' and a port"},
        {"redis://::1:6379", "IPv6 address in brackets"},
        {"redis://:@h", "password after ':' is empty"},
        {"redis://u:p%zzass@h", "bad %-escape in the password"},
        {"redis://u:p%4@h", "bad %-escape in the password"},
        {"redis://u:p%00x@h", "bad %-escape in the password"},
        {"redis://u%g1:p@h", "bad %-escape in the user name"},
        {"unix://relative.sock", "absolute path"},
        {"unix://", "absolute path"},
        {"unix:///s.sock?db=x", "expected ?db=N"},
        {"unix:///s.sock?foo=1", "expected ?db=N"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wh_redis_uri u;
        wh_err err = WH_ERR_INIT;
        int rc = wh_redis_uri_parse(cases[i].uri, &u, &err);
        if (rc != WH_ECONFIG) WH_TEST_FAIL("%s: rc %d, expected WH_ECONFIG", cases[i].uri, rc);
        ASSERT_CONTAINS(err.msg, cases[i].msg);
        ASSERT_CONTAINS(err.msg, "queue.uri: ");
        ASSERT(u.host == NULL && u.password == NULL); /* zeroed: nothing to free */
        wh_redis_uri_free(&u);
    }
    /* a password never shows in a message, whatever else is wrong */
    const char *bad[] = {"redis://u:topsecret@h:99999", "redis://:topsecret@h/x", "redis://:topsecret@[::1",
                         "redis://u:topsecret@h/0?x=1", "unix://:topsecret@relative"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wh_redis_uri u;
        wh_err err = WH_ERR_INIT;
        ASSERT_EQ_INT(wh_redis_uri_parse(bad[i], &u, &err), WH_ECONFIG);
        ASSERT(strstr(err.msg, "topsecret") == NULL);
    }
}

static void test_uri_redacted(void) {
    static const struct { const char *uri, *shown; } cases[] = {
        {"redis://alice:secret@h:1/2", "redis://alice:***@h:1/2"},
        {"redis://:secret@h", "redis://:***@h:6379/0"},
        {"redis://secret@h", "redis://:***@h:6379/0"},
        {"redis://h", "redis://h:6379/0"},
        {"redis://[::1]:7000/3", "redis://[::1]:7000/3"},
        {"unix:///run/r.sock", "unix:///run/r.sock"},
        {"unix:///run/r.sock?db=2", "unix:///run/r.sock?db=2"},
        {"unix://:pw@/run/r.sock?db=2", "unix://:***@/run/r.sock?db=2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wh_redis_uri u;
        wh_err err;
        ASSERT_EQ_INT(wh_redis_uri_parse(cases[i].uri, &u, &err), 0);
        char buf[256];
        wh_redis_uri_redacted(&u, buf, sizeof buf);
        ASSERT_STREQ(buf, cases[i].shown);
        char small[8];
        wh_redis_uri_redacted(&u, small, sizeof small); /* truncated, terminated */
        ASSERT_EQ_INT(strlen(small), 7);
        wh_redis_uri_free(&u);
    }
}

/* Any text, parsed or not: one form, and no password (faults #12). */
static void test_uri_redact_text(void) {
    static const struct { const char *text, *shown; } cases[] = {
        {"redis://alice:s3cret@h:1/2", "redis://alice:***@h:1/2"}, /* parses: as wh_redis_uri_redacted */
        {"redis://s3cret@h", "redis://:***@h:6379/0"},
        {"redis://:s3cret@host:notaport/0", "redis://***@host:notaport/0"},
        {"redis://u:s3cret@[::1", "redis://***@[::1"},
        {"redis://u:s3c@ret@host:x", "redis://***@host:x"},   /* the last '@' */
        {"rediss://:s3cret@host", "rediss://***@host"},
        {"unix://:s3cret@run/r.sock", "unix://***@run/r.sock"},
        {"http://u:s3cret@host", "http://***@host"},
        {"redis:/:s3cret@host", "redis:***@host"},             /* no "//": after the first ':' */
        {"s3cret@host", "***@host"},                           /* neither: from the start */
        {"redis://host:notaport", "redis://host:notaport"},    /* no '@': as it is */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        wh_redis_uri_redact(cases[i].text, buf, sizeof buf);
        ASSERT_STREQ(buf, cases[i].shown);
        char small[6];
        wh_redis_uri_redact(cases[i].text, small, sizeof small); /* truncated, terminated */
        ASSERT(strlen(small) <= 5);
        ASSERT(strstr(small, "s3c") == NULL);
    }
    char one[1] = {'x'};
    wh_redis_uri_redact("redis://:s3cret@h:x", one, sizeof one);
    ASSERT_EQ_INT(one[0], '\0');
    wh_redis_uri_redact("redis://:s3cret@h:x", NULL, 0); /* n == 0: nothing written */
}

static void test_connect_bad_calls(void) {
    wh_redis_uri u;
    wh_err err;
    wh_redis_client *c = (wh_redis_client *)&u;
    ASSERT_EQ_INT(wh_redis_uri_parse("redis://127.0.0.1:1", &u, &err), 0);
    ASSERT_EQ_INT(wh_redis_client_connect(&u, NULL, 0, &c, &err), WH_EINVAL);
    ASSERT(c == NULL);
    ASSERT_EQ_INT(wh_redis_client_connect(&u, NULL, NAN, &c, &err), WH_EINVAL);
    wh_redis_uri_free(&u);
    wh_redis_client_free(NULL);
    wh_redis_stats_free(NULL);
}

/* Nothing listens: refused at once, with the URI redacted. */
static void test_connect_refused(void) {
    int port = wh_test_free_port();
    ASSERT(port > 0);
    char uri[128];
    snprintf(uri, sizeof uri, "redis://admin:" AUTH_PW "@127.0.0.1:%d/0", port);
    wh_redis_client *c;
    wh_err err = WH_ERR_INIT;
    double t0 = wh_clock_monotonic();
    ASSERT_EQ_INT(connect_s(uri, NULL, 2, &c, &err), WH_EUNAVAIL);
    ASSERT(wh_clock_monotonic() - t0 < 1.0);
    ASSERT(c == NULL);
    char want[160];
    snprintf(want, sizeof want, "cannot connect to redis://admin:***@127.0.0.1:%d/0: Connection refused", port);
    ASSERT_STREQ(err.msg, want);
    ASSERT(strstr(err.msg, AUTH_PW) == NULL);

    ASSERT_EQ_INT(connect_s("unix:///nonexistent/wh.sock", NULL, 2, &c, &err), WH_EUNAVAIL);
    ASSERT_CONTAINS(err.msg, "cannot connect to unix:///nonexistent/wh.sock: ");
}

/* ---- against a server ---- */

/* A stopped server (SIGSTOP): the TCP connect succeeds (the kernel accepts),
 * nothing answers; the timeout bounds the call. An established client whose
 * server stalls fails its call, then reconnects once the server is back. */
static void test_timeouts(void) {
    char uri[128];
    uri_of(uri, sizeof uri, "", srv.port, 0);
    wh_redis_client *c = NULL, *c2 = NULL;
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(connect_s(uri, NULL, 0.3, &c, &err), 0);
    wh_test_redis_pause(&srv, true);
    double t0 = wh_clock_monotonic();
    int rc = connect_s(uri, NULL, 0.3, &c2, &err);
    double took = wh_clock_monotonic() - t0;
    wh_job *job = make_job("DownloadWorker", "{\"user_guid\":\"t\"}", NULL);
    double t1 = wh_clock_monotonic();
    wh_err perr = WH_ERR_INIT;
    int prc = push_job(c, job, &perr);
    double ptook = wh_clock_monotonic() - t1;
    wh_test_redis_pause(&srv, false);
    ASSERT_EQ_INT(rc, WH_EUNAVAIL);
    ASSERT(c2 == NULL);
    ASSERT_CONTAINS(err.msg, "no answer within 0.3 s (timed out)");
    ASSERT(took >= 0.25 && took < 1.5);
    ASSERT_EQ_INT(prc, WH_EUNAVAIL);
    ASSERT_CONTAINS(perr.msg, "cannot push to redis://127.0.0.1:");
    ASSERT_CONTAINS(perr.msg, "timed out");
    ASSERT(ptook < 1.5);
    /* the server is back: the next call reconnects */
    ASSERT_EQ_INT(push_job(c, job, &err), 0);
    wh_job_free(job);
    wh_redis_client_free(c);
}

/* The server drops the connection: the call fails, the next one reconnects. */
static void test_reconnect_after_kill(void) {
    flushall();
    wh_redis_client *c = plain_client(NULL);
    ASSERT(c != NULL);
    redisContext *r = raw(&srv, NULL, 0);
    freeReplyObject(cmd(r, "CLIENT KILL TYPE normal SKIPME yes"));
    wh_job *job = make_job("DownloadWorker", "{\"user_guid\":\"k\"}", NULL);
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(push_job(c, job, &err), WH_EUNAVAIL);
    ASSERT_CONTAINS(err.msg, "cannot push to redis://127.0.0.1:");
    ASSERT_EQ_INT(push_job(c, job, &err), 0);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), 1);
    wh_job_free(job);
    wh_redis_client_free(c);
    redisFree(r);
}

static void test_version_key(void) {
    flushall();
    wh_redis_client *c = plain_client("vns");
    ASSERT(c != NULL);
    wh_redis_client_free(c);
    redisContext *r = raw(&srv, NULL, 0);
    char *v = cmd_str(r, "GET %s", "vns:" WH_KEY_VERSION);
    ASSERT_STREQ(v, "2");
    free(v);
    freeReplyObject(cmd(r, "SET %s 3", WH_KEY_VERSION));
    char uri[128];
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "", srv.port, 0), NULL, 2, &c, &err), WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "holds workerhost keys of layout version 3 (key wh:version)");
    redisFree(r);
}

/* Layout 1 kept a host's set of queues at wh:inflight:<id>:queues (the
 * in-flight list of a queue named "queues"). With no host of layout 1 alive,
 * connecting moves the sets to wh:inflight-queues:<id>; with one alive, it
 * refuses and changes nothing. */
static void test_layout_1_migration(void) {
    flushall();
    redisContext *r = raw(&srv, NULL, 0);
    freeReplyObject(cmd(r, "SET %s 1", WH_KEY_VERSION));
    freeReplyObject(cmd(r, "SADD %s %s", WH_KEY_REGISTRY, "old-host:7:aaaaaaaaaaaa"));
    freeReplyObject(cmd(r, "SADD %s %s", "wh:inflight:old-host:7:aaaaaaaaaaaa:queues", "default"));
    freeReplyObject(cmd(r, "LPUSH %s %s", "wh:inflight:old-host:7:aaaaaaaaaaaa:default", "{\"class\":\"X\"}"));
    freeReplyObject(cmd(r, "HSET %s beat 1", "old-host:7:aaaaaaaaaaaa")); /* alive */
    char uri[128];
    wh_err err = WH_ERR_INIT;
    wh_redis_client *c = NULL;
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "", srv.port, 0), NULL, 2, &c, &err), WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "layout version 1, in use by a running host of an older workerhost (old-host:7:aaaaaaaaaaaa)");
    char *v = cmd_str(r, "GET %s", WH_KEY_VERSION);
    ASSERT_STREQ(v, "1");
    free(v);
    ASSERT_EQ_INT(cmd_int(r, "EXISTS %s", "wh:inflight:old-host:7:aaaaaaaaaaaa:queues"), 1);
    /* the old host is gone (its heartbeat expired): the keys move */
    freeReplyObject(cmd(r, "DEL %s", "old-host:7:aaaaaaaaaaaa"));
    wh_err_clear(&err);
    ASSERT_EQ_INT(connect_s(uri, NULL, 2, &c, &err), 0);
    wh_redis_client_free(c);
    v = cmd_str(r, "GET %s", WH_KEY_VERSION);
    ASSERT_STREQ(v, "2");
    free(v);
    ASSERT_EQ_INT(cmd_int(r, "EXISTS %s", "wh:inflight:old-host:7:aaaaaaaaaaaa:queues"), 0);
    ASSERT_EQ_INT(cmd_int(r, "SISMEMBER %s default", WH_KEY_QUEUES_OF_PREFIX "old-host:7:aaaaaaaaaaaa"), 1);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "wh:inflight:old-host:7:aaaaaaaaaaaa:default"), 1); /* for the reaper */
    redisFree(r);
}

static void test_auth(void) {
    char uri[160];
    wh_redis_client *c = NULL;
    wh_err err = WH_ERR_INIT;
    /* requirepass: AUTH pass */
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, ":" AUTH_PW "@", auth_srv.port, 0), NULL, 2, &c, &err), 0);
    wh_job *job = make_job("DownloadWorker", "{\"user_guid\":\"a\"}", NULL);
    ASSERT_EQ_INT(push_job(c, job, &err), 0);
    wh_redis_client_free(c);

    /* wrong password: a clear error, no password in it */
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, ":notthepassword@", auth_srv.port, 0), NULL, 2, &c, &err),
                  WH_ECONFIG);
    ASSERT(c == NULL);
    char want[200];
    snprintf(want, sizeof want, "cannot log in to redis://:***@127.0.0.1:%d/0: authentication failed (WRONGPASS",
             auth_srv.port);
    ASSERT_CONTAINS(err.msg, want);
    ASSERT(strstr(err.msg, "notthepassword") == NULL);

    /* no password at all */
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "", auth_srv.port, 0), NULL, 2, &c, &err), WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "authentication required (NOAUTH");
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "", auth_srv.port, 3), NULL, 2, &c, &err), WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "authentication required (NOAUTH");

    /* ACL users: AUTH user pass, a %-escaped password, a user without rights */
    redisContext *r = raw(&auth_srv, AUTH_PW, 0);
    ASSERT(r != NULL);
    freeReplyObject(cmd(r, "ACL SETUSER alice on >alicepw ~* &* +@all"));
    freeReplyObject(cmd(r, "ACL SETUSER carol on >p@ss:w/rd ~* &* +@all"));
    freeReplyObject(cmd(r, "ACL SETUSER bob on >bobpw ~queue:* +@all"));
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "alice:alicepw@", auth_srv.port, 0), NULL, 2, &c, &err), 0);
    char shown[128];
    snprintf(shown, sizeof shown, "redis://alice:***@127.0.0.1:%d/0", auth_srv.port);
    ASSERT_STREQ(wh_redis_client_uri_shown(c), shown);
    wh_redis_client_free(c);
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "carol:p%40ss%3Aw%2Frd@", auth_srv.port, 0), NULL, 2, &c, &err),
                  0);
    ASSERT_EQ_INT(push_job(c, job, &err), 0);
    wh_redis_client_free(c);
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "alice:bad@", auth_srv.port, 0), NULL, 2, &c, &err), WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "authentication failed (WRONGPASS");
    ASSERT_CONTAINS(err.msg, "redis://alice:***@127.0.0.1:");
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "bob:bobpw@", auth_srv.port, 0), NULL, 2, &c, &err), WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "permission denied (NOPERM");
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), 2);
    wh_job_free(job);
    redisFree(r);
}

static void test_select_db(void) {
    flushall();
    char uri[128];
    wh_redis_client *c = NULL;
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "", srv.port, 5), NULL, 2, &c, &err), 0);
    ASSERT_STREQ(wh_redis_client_uri_shown(c), uri);
    wh_job *job = make_job("DownloadWorker", "{\"user_guid\":\"d\"}", NULL);
    ASSERT_EQ_INT(push_job(c, job, &err), 0);
    wh_job_free(job);
    wh_redis_client_free(c);
    redisContext *r0 = raw(&srv, NULL, 0), *r5 = raw(&srv, NULL, 5);
    ASSERT_EQ_INT(cmd_int(r5, "LLEN %s", "queue:default"), 1);
    ASSERT_EQ_INT(cmd_int(r0, "EXISTS %s", "queue:default"), 0);
    ASSERT_EQ_INT(cmd_int(r0, "EXISTS %s", WH_KEY_VERSION), 0);
    redisFree(r0);
    redisFree(r5);
    ASSERT_EQ_INT(connect_s(uri_of(uri, sizeof uri, "", srv.port, 99), NULL, 2, &c, &err), WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "cannot select database 99 on redis://127.0.0.1:");
    ASSERT_CONTAINS(err.msg, "DB index is out of range");
}

static void test_namespace(void) {
    flushall();
    wh_redis_client *c = plain_client("ns");
    ASSERT(c != NULL);
    wh_buf k = WH_BUF_INIT;
    ASSERT_STREQ(wh_redis_client_key(c, &k, "%s%s", WH_KEY_QUEUE_PREFIX, "x"), "ns:queue:x");
    ASSERT_STREQ(wh_redis_client_namespace(c), "ns");
    wh_buf_free(&k);
    wh_err err = WH_ERR_INIT;
    wh_job *job = make_job("DownloadWorker", "{\"user_guid\":\"n\"}", NULL);
    wh_enqueue_options later = WH_ENQUEUE_OPTIONS_INIT;
    later.in = 100;
    wh_job *sched = make_job("DownloadWorker", "{\"user_guid\":\"s\"}", &later);
    ASSERT_EQ_INT(push_job(c, job, &err), 0);
    ASSERT_EQ_INT(push_job(c, sched, &err), 0);
    wh_job *both[2] = {job, sched};
    ASSERT_EQ_INT(push_jobs(c, both, 2, &err), 0);
    wh_job_free(job);
    wh_job_free(sched);
    wh_redis_client_free(c);
    redisContext *r = raw(&srv, NULL, 0);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "ns:queue:default"), 2);
    ASSERT_EQ_INT(cmd_int(r, "ZCARD %s", "ns:schedule"), 1); /* the same member twice */
    ASSERT_EQ_INT(cmd_int(r, "SISMEMBER ns:queues %s", "default"), 1); /* members are not prefixed */
    ASSERT_EQ_INT(cmd_int(r, "SCARD %s", "ns:queues"), 1);
    ASSERT_EQ_INT(cmd_int(r, "EXISTS %s", "queues"), 0);
    ASSERT_EQ_INT(cmd_int(r, "EXISTS %s", "queue:default"), 0);
    ASSERT_EQ_INT(cmd_int(r, "EXISTS %s", "ns:" WH_KEY_VERSION), 1);
    redisFree(r);
    /* "" is no namespace */
    c = plain_client("");
    ASSERT(c != NULL);
    ASSERT(wh_redis_client_namespace(c) == NULL);
    wh_redis_client_free(c);
}

/* The number's text in the payload has a '.', and reads as a float. */
static void check_float_field(const char *payload, const wh_json *root, const char *key, double near) {
    const wh_json *v = wh_json_getz(root, key);
    if (v == NULL) WH_TEST_FAIL("%s missing in %s", key, payload);
    ASSERT_EQ_INT(v->type, WH_JSON_FLOAT);
    ASSERT(v->u.f.raw && memchr(v->u.f.raw, '.', v->u.f.raw_len));
    ASSERT(fabs(v->u.f.d - near) < 5);
}

static void test_push_shape(void) {
    flushall();
    wh_redis_client *c = plain_client(NULL);
    ASSERT(c != NULL);
    wh_err err = WH_ERR_INIT;
    wh_job *j1 = make_job("DownloadWorker", "{\"user_guid\":\"u1\",\"count\":2}", NULL);
    wh_job *j2 = make_job("DownloadWorker", "{\"user_guid\":\"u2\"}", NULL);
    wh_enqueue_options o = WH_ENQUEUE_OPTIONS_INIT;
    o.queue = "critical";
    o.retry = WH_RETRY_FALSE;
    wh_job *j3 = make_job("ResizeImageWorker", "[\"http://x/a.png\",100]", &o);
    ASSERT(j1 && j2 && j3);
    ASSERT_EQ_INT(push_job(c, j1, &err), 0);
    ASSERT_EQ_INT(push_job(c, j2, &err), 0);
    ASSERT_EQ_INT(push_job(c, j3, &err), 0);
    wh_redis_client_free(c);

    redisContext *r = raw(&srv, NULL, 0);
    redisReply *q = cmd(r, "SMEMBERS queues");
    ASSERT(q && q->type == REDIS_REPLY_ARRAY && q->elements == 2);
    bool has_default = false, has_critical = false;
    for (size_t i = 0; i < q->elements; i++) {
        has_default |= strcmp(q->element[i]->str, "default") == 0;
        has_critical |= strcmp(q->element[i]->str, "critical") == 0;
    }
    freeReplyObject(q);
    ASSERT(has_default && has_critical);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), 2);
    ASSERT_EQ_INT(cmd_int(r, "EXISTS %s", "schedule"), 0);
    /* LPUSH: the oldest at index -1, popped first by BRPOP */
    char *oldest = cmd_str(r, "LINDEX %s -1", "queue:default");
    char *newest = cmd_str(r, "LINDEX %s 0", "queue:default");
    ASSERT(oldest && newest);
    ASSERT_CONTAINS(oldest, "\"u1\"");
    ASSERT_CONTAINS(newest, "\"u2\"");

    double now = wh_clock_wall();
    wh_json_doc *doc = wh_json_parse(oldest, strlen(oldest), NULL, &err);
    ASSERT(doc != NULL);
    const wh_json *p = wh_json_doc_root(doc);
    wh_buf args = WH_BUF_INIT;
    wh_json_write(&args, wh_json_getz(p, "args"), NULL);
    ASSERT_STREQ(wh_buf_cstr(&args), "[{\"user_guid\":\"u1\",\"count\":2}]");
    wh_buf_free(&args);
    const wh_json *v = wh_json_getz(p, "class");
    ASSERT(v && v->type == WH_JSON_STRING && strcmp(v->u.str.s, "DownloadWorker") == 0);
    v = wh_json_getz(p, "queue");
    ASSERT(v && v->type == WH_JSON_STRING && strcmp(v->u.str.s, "default") == 0);
    v = wh_json_getz(p, "retry");
    ASSERT(v && v->type == WH_JSON_INT && v->u.i == 5); /* the worker's */
    v = wh_json_getz(p, "jid");
    ASSERT(v && v->type == WH_JSON_STRING && v->u.str.len == 24 && memcmp(v->u.str.s, j1->jid, 24) == 0);
    for (size_t i = 0; i < 24; i++) ASSERT(strchr("0123456789abcdef", j1->jid[i]) != NULL);
    check_float_field(oldest, p, "created_at", now);
    check_float_field(oldest, p, "enqueued_at", now);
    ASSERT(wh_json_getz(p, "at") == NULL);
    /* compact, as Ruby's JSON.generate: no spaces outside strings */
    ASSERT(strstr(oldest, ": ") == NULL && strstr(oldest, ", ") == NULL);
    ASSERT(strncmp(oldest, "{\"class\":\"DownloadWorker\",\"args\":", 33) == 0);
    wh_json_doc_free(doc);

    char *crit = cmd_str(r, "LINDEX %s 0", "queue:critical");
    ASSERT(crit != NULL);
    ASSERT_CONTAINS(crit, "\"class\":\"ResizeImageWorker\",\"args\":[\"http://x/a.png\",100],\"queue\":\"critical\","
                          "\"retry\":false,");
    free(crit);
    free(oldest);
    free(newest);
    redisFree(r);
    wh_job_free(j1);
    wh_job_free(j2);
    wh_job_free(j3);
}

static void test_push_scheduled(void) {
    flushall();
    wh_redis_client *c = plain_client(NULL);
    ASSERT(c != NULL);
    wh_err err = WH_ERR_INIT;
    wh_enqueue_options o = WH_ENQUEUE_OPTIONS_INIT;
    o.in = 60;
    wh_job *j = make_job("DownloadWorker", "{\"user_guid\":\"later\"}", &o);
    wh_enqueue_options past = WH_ENQUEUE_OPTIONS_INIT;
    past.at = wh_clock_wall() - 10; /* due already: pushed now, as Sidekiq does */
    wh_job *due = make_job("DownloadWorker", "{\"user_guid\":\"due\"}", &past);
    ASSERT_EQ_INT(push_job(c, j, &err), 0);
    ASSERT_EQ_INT(push_job(c, due, &err), 0);
    wh_redis_client_free(c);

    redisContext *r = raw(&srv, NULL, 0);
    redisReply *z = cmd(r, "ZRANGE schedule 0 -1 WITHSCORES");
    ASSERT(z && z->type == REDIS_REPLY_ARRAY && z->elements == 2);
    const char *member = z->element[0]->str;
    double score = strtod(z->element[1]->str, NULL);
    ASSERT(fabs(score - j->run_at) < 1e-5);
    ASSERT(fabs(score - (wh_clock_wall() + 60)) < 5);
    ASSERT(strstr(member, "\"enqueued_at\"") == NULL);
    ASSERT(strstr(member, "\"at\"") == NULL);
    ASSERT_CONTAINS(member, "\"created_at\":");
    ASSERT_CONTAINS(member, "\"retry\":5");
    ASSERT_CONTAINS(member, j->jid);
    freeReplyObject(z);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), 1);
    char *now_job = cmd_str(r, "LINDEX %s 0", "queue:default");
    ASSERT(now_job != NULL);
    ASSERT_CONTAINS(now_job, "\"due\"");
    ASSERT_CONTAINS(now_job, "\"enqueued_at\":");
    free(now_job);
    redisFree(r);
    wh_job_free(j);
    wh_job_free(due);
}

static void test_push_bulk(void) {
    flushall();
    wh_redis_client *c = plain_client(NULL);
    ASSERT(c != NULL);
    wh_err err = WH_ERR_INIT;
    enum { N = 2500 };
    wh_job **jobs = calloc(N, sizeof *jobs);
    for (int i = 0; i < N; i++) {
        char args[64];
        snprintf(args, sizeof args, "{\"user_guid\":\"u%d\"}", i);
        jobs[i] = make_job("DownloadWorker", args, NULL);
    }
    double t0 = wh_clock_monotonic();
    ASSERT_EQ_INT(push_jobs(c, jobs, 1000, &err), 0);
    double took = wh_clock_monotonic() - t0;
    fprintf(stderr, "    bulk push of 1000: %.1f ms\n", took * 1000);
    ASSERT(took < 2.0);
    redisContext *r = raw(&srv, NULL, 0);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), 1000);
    freeReplyObject(cmd(r, "DEL queue:default"));
    /* more than one LPUSH (1000 per command): still in order, jobs[0] popped first */
    ASSERT_EQ_INT(push_jobs(c, jobs, N, &err), 0);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), N);
    int probe[] = {0, 1, 999, 1000, 1001, 1999, 2000, N - 1};
    for (size_t k = 0; k < sizeof probe / sizeof probe[0]; k++) {
        redisReply *e = cmd(r, "LINDEX queue:default %d", -(probe[k] + 1));
        ASSERT(e && e->type == REDIS_REPLY_STRING);
        char want[32];
        snprintf(want, sizeof want, "\"u%d\"", probe[k]);
        ASSERT_CONTAINS(e->str, want);
        ASSERT_CONTAINS(e->str, jobs[probe[k]]->jid);
        freeReplyObject(e);
    }
    ASSERT_EQ_INT(cmd_int(r, "SCARD %s", "queues"), 1);

    /* several queues and scheduled jobs in one pipeline */
    flushall();
    wh_enqueue_options later = WH_ENQUEUE_OPTIONS_INIT, media = WH_ENQUEUE_OPTIONS_INIT;
    later.in = 30;
    media.queue = "media2";
    wh_job *mixed[6] = {
        make_job("DownloadWorker", "{\"user_guid\":\"a\"}", NULL),
        make_job("ResizeImageWorker", "[\"u\",1]", NULL),
        make_job("DownloadWorker", "{\"user_guid\":\"b\"}", &later),
        make_job("ResizeImageWorker", "[\"v\",2]", &media),
        make_job("DownloadWorker", "{\"user_guid\":\"c\"}", NULL),
        make_job("DownloadWorker", "{\"user_guid\":\"d\"}", &later),
    };
    ASSERT_EQ_INT(push_jobs(c, mixed, 6, &err), 0);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), 2);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:media"), 1);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:media2"), 1);
    ASSERT_EQ_INT(cmd_int(r, "ZCARD %s", "schedule"), 2);
    ASSERT_EQ_INT(cmd_int(r, "SCARD %s", "queues"), 3);
    char *first = cmd_str(r, "LINDEX %s -1", "queue:default");
    ASSERT(first != NULL);
    ASSERT_CONTAINS(first, "\"a\"");
    free(first);
    redisReply *z = cmd(r, "ZRANGE schedule 0 -1");
    for (size_t i = 0; z && i < z->elements; i++) ASSERT(strstr(z->element[i]->str, "enqueued_at") == NULL);
    if (z) freeReplyObject(z);
    ASSERT_EQ_INT(push_jobs(c, mixed, 0, &err), 0); /* nothing */
    for (int i = 0; i < 6; i++) wh_job_free(mixed[i]);

    for (int i = 0; i < N; i++) wh_job_free(jobs[i]);
    free(jobs);
    redisFree(r);
    wh_redis_client_free(c);
}

static void test_push_errors(void) {
    flushall();
    redisContext *r = raw(&srv, NULL, 0);
    freeReplyObject(cmd(r, "SET queue:default notalist"));
    wh_redis_client *c = plain_client(NULL);
    ASSERT(c != NULL);
    wh_err err = WH_ERR_INIT;
    wh_job *j = make_job("DownloadWorker", "{\"user_guid\":\"w\"}", NULL);
    ASSERT_EQ_INT(push_job(c, j, &err), WH_EUNAVAIL);
    ASSERT_CONTAINS(err.msg, "redis refused: WRONGTYPE");
    wh_job *two[2] = {j, j};
    ASSERT_EQ_INT(push_jobs(c, two, 2, &err), WH_EUNAVAIL);
    ASSERT_CONTAINS(err.msg, "bulk push of 2 jobs failed (some may have been stored): ");
    /* the connection stays usable after an error reply */
    freeReplyObject(cmd(r, "DEL queue:default"));
    ASSERT_EQ_INT(push_job(c, j, &err), 0);
    ASSERT_EQ_INT(cmd_int(r, "LLEN %s", "queue:default"), 1);
    wh_job_free(j);
    wh_redis_client_free(c);
    redisFree(r);
}

static void test_stats(void) {
    flushall();
    redisContext *r = raw(&srv, NULL, 0);
    double now = wh_clock_wall();
    freeReplyObject(cmd(r, "MSET stat:processed 10 stat:failed 3"));
    freeReplyObject(cmd(r, "ZADD retry 1 a 2 b"));
    freeReplyObject(cmd(r, "ZADD dead 1 x"));
    /* queue "lat": oldest job enqueued 100 s ago (float seconds); "lat8":
     * 50 s ago, in Sidekiq 8's integer milliseconds; "empty" known, no jobs */
    freeReplyObject(cmd(r, "SADD queues lat lat8 empty"));
    freeReplyObject(cmd(r, "LPUSH queue:lat {\"class\":\"A\",\"args\":[],\"enqueued_at\":%.6f}", now - 100));
    freeReplyObject(cmd(r, "LPUSH queue:lat {\"class\":\"A\",\"args\":[],\"enqueued_at\":%.6f}", now - 1));
    freeReplyObject(cmd(r, "LPUSH queue:lat8 {\"class\":\"A\",\"args\":[],\"enqueued_at\":%lld}",
                        (long long)((now - 50) * 1000)));
    /* two live processes and one gone (no hash: skipped) */
    freeReplyObject(cmd(r, "SADD processes host1:11:aaaaaaaaaaaa host2:22:bbbbbbbbbbbb gone:3:cccccccccccc"));
    freeReplyObject(cmd(r,
                        "HSET host1:11:aaaaaaaaaaaa info {\"hostname\":\"host1\",\"pid\":11,\"concurrency\":7,"
                        "\"queues\":[\"default\"],\"identity\":\"host1:11:aaaaaaaaaaaa\"} busy 2 beat %.3f quiet false",
                        now - 1));
    freeReplyObject(cmd(r,
                        "HSET host2:22:bbbbbbbbbbbb info {\"hostname\":\"host2\",\"pid\":22,\"concurrency\":3} "
                        "busy 1 beat %.3f quiet true",
                        now - 2));
    /* in flight: one registered workerhost with two in-flight lists */
    freeReplyObject(cmd(r, "SADD wh:registry host1:11:aaaaaaaaaaaa"));
    freeReplyObject(cmd(r, "SADD wh:inflight-queues:host1:11:aaaaaaaaaaaa default media"));
    freeReplyObject(cmd(r, "RPUSH wh:inflight:host1:11:aaaaaaaaaaaa:default j1 j2"));
    freeReplyObject(cmd(r, "RPUSH wh:inflight:host1:11:aaaaaaaaaaaa:media j3"));

    wh_redis_client *c = plain_client(NULL);
    ASSERT(c != NULL);
    wh_err err = WH_ERR_INIT;
    wh_enqueue_options later = WH_ENQUEUE_OPTIONS_INIT;
    later.in = 60;
    wh_job *j = make_job("DownloadWorker", "{\"user_guid\":\"s\"}", NULL);
    wh_job *s = make_job("DownloadWorker", "{\"user_guid\":\"t\"}", &later);
    ASSERT_EQ_INT(push_job(c, j, &err), 0);
    ASSERT_EQ_INT(push_job(c, s, &err), 0);
    wh_job_free(j);
    wh_job_free(s);

    wh_redis_stats st;
    ASSERT_EQ_INT(wh_redis_client_stats(c, &st, &err), 0);
    ASSERT_EQ_INT(st.processed, 10);
    ASSERT_EQ_INT(st.failed, 3);
    ASSERT_EQ_INT(st.scheduled, 1);
    ASSERT_EQ_INT(st.retries, 2);
    ASSERT_EQ_INT(st.dead, 1);
    ASSERT_EQ_INT(st.in_flight, 3);
    ASSERT_EQ_INT(st.enqueued, 4);
    ASSERT_EQ_INT(st.busy, 3);
    ASSERT_EQ_INT(st.nqueues, 4);
    ASSERT_STREQ(st.queues[0].name, "default");
    ASSERT_EQ_INT(st.queues[0].size, 1);
    ASSERT(st.queues[0].latency >= 0 && st.queues[0].latency < 5);
    ASSERT_STREQ(st.queues[1].name, "empty");
    ASSERT_EQ_INT(st.queues[1].size, 0);
    ASSERT_EQ_DBL(st.queues[1].latency, 0);
    ASSERT_STREQ(st.queues[2].name, "lat");
    ASSERT_EQ_INT(st.queues[2].size, 2);
    ASSERT(fabs(st.queues[2].latency - 100) < 5);
    ASSERT_STREQ(st.queues[3].name, "lat8");
    ASSERT(fabs(st.queues[3].latency - 50) < 5);
    ASSERT_EQ_INT(st.nprocesses, 2);
    ASSERT_STREQ(st.processes[0].identity, "host1:11:aaaaaaaaaaaa");
    ASSERT_STREQ(st.processes[0].hostname, "host1");
    ASSERT_EQ_INT(st.processes[0].pid, 11);
    ASSERT_EQ_INT(st.processes[0].busy, 2);
    ASSERT_EQ_INT(st.processes[0].concurrency, 7);
    ASSERT(!st.processes[0].quiet);
    ASSERT(fabs(st.processes[0].beat - (now - 1)) < 0.01);
    ASSERT_STREQ(st.processes[1].identity, "host2:22:bbbbbbbbbbbb");
    ASSERT_EQ_INT(st.processes[1].concurrency, 3);
    ASSERT(st.processes[1].quiet);
    ASSERT(fabs(st.now - wh_clock_wall()) < 5);
    wh_redis_stats_free(&st);
    wh_redis_stats_free(&st); /* twice: harmless */

    /* a key of the wrong type is an error, not a crash */
    freeReplyObject(cmd(r, "SET retry notazset"));
    ASSERT_EQ_INT(wh_redis_client_stats(c, &st, &err), WH_EUNAVAIL);
    ASSERT_CONTAINS(err.msg, "cannot read the stats from redis://127.0.0.1:");
    ASSERT_CONTAINS(err.msg, "WRONGTYPE");
    ASSERT_EQ_INT(st.nqueues, 0);
    wh_redis_client_free(c);

    /* an empty, namespaced Redis */
    c = plain_client("statsns");
    ASSERT(c != NULL);
    freeReplyObject(cmd(r, "SET statsns:stat:processed 5"));
    ASSERT_EQ_INT(wh_redis_client_stats(c, &st, &err), 0);
    ASSERT_EQ_INT(st.processed, 5);
    ASSERT_EQ_INT(st.failed, 0);
    ASSERT_EQ_INT(st.nqueues, 0);
    ASSERT_EQ_INT(st.nprocesses, 0);
    wh_redis_stats_free(&st);
    wh_redis_client_free(c);
    redisFree(r);
}

static void test_unix_socket(void) {
    wh_test_redis u;
    char sock[256];
    char dir[] = "/tmp/wh-test-sock-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    const char *extra[] = {"--unixsocket", sock, NULL};
    if (wh_test_redis_start(&u, extra) != 0) {
        rmdir(dir);
        WH_TEST_FAIL("cannot start redis-server with a unix socket");
    }
    char uri[300];
    snprintf(uri, sizeof uri, "unix://%s?db=2", sock);
    wh_redis_client *c = NULL;
    wh_err err = WH_ERR_INIT;
    int rc = connect_s(uri, NULL, 2, &c, &err);
    wh_job *j = make_job("DownloadWorker", "{\"user_guid\":\"sock\"}", NULL);
    int prc = rc == 0 ? push_job(c, j, &err) : rc;
    redisContext *r = raw(&u, NULL, 2);
    long long n = r ? cmd_int(r, "LLEN %s", "queue:default") : -1;
    if (r) redisFree(r);
    wh_job_free(j);
    wh_redis_client_free(c);
    wh_test_redis_stop(&u);
    unlink(sock);
    rmdir(dir);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(prc, 0);
    ASSERT_EQ_INT(n, 1);
}

static int load_catalog(void) {
    const char *root = getenv("WH_SOURCE_DIR");
    if (root == NULL || root[0] == '\0') root = WH_SOURCE_DIR;
    const char *yaml = "workers:\n  scripts: workers\nlogger:\n  level: warn\n";
    wh_err err;
    if (wh_config_parse(&cfg, "test.yaml", yaml, strlen(yaml), root, "test", &err) != 0 ||
        wh_catalog_load(cfg, &cat, &err) != 0) {
        fprintf(stderr, "cannot load the example workers: %s\n", err.msg);
        return -1;
    }
    return 0;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* a write to a killed connection is an error, not a signal */
    RUN(test_uri_forms);
    RUN(test_uri_bad);
    RUN(test_uri_redacted);
    RUN(test_uri_redact_text);
    RUN(test_connect_bad_calls);
    RUN(test_connect_refused);
    if (load_catalog() != 0) return 1;
    if (!wh_test_redis_available()) {
        fprintf(stderr, "SKIP the tests against a server: no redis-server (install redis-server)\n");
    } else {
        const char *pass[] = {"--requirepass", AUTH_PW, NULL};
        if (wh_test_redis_start(&srv, NULL) != 0 || wh_test_redis_start(&auth_srv, pass) != 0) {
            fprintf(stderr, "cannot start redis-server\n");
            wh_test_redis_stop(&srv);
            return 1;
        }
        RUN(test_timeouts);
        RUN(test_reconnect_after_kill);
        RUN(test_version_key);
        RUN(test_layout_1_migration);
        RUN(test_auth);
        RUN(test_select_db);
        RUN(test_namespace);
        RUN(test_push_shape);
        RUN(test_push_scheduled);
        RUN(test_push_bulk);
        RUN(test_push_errors);
        RUN(test_stats);
        RUN(test_unix_socket);
        wh_test_redis_stop(&srv);
        wh_test_redis_stop(&auth_srv);
    }
    wh_catalog_release(cat);
    wh_config_free(cfg);
    return TEST_REPORT();
}
