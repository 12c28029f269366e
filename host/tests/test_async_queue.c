/* test_async_queue.c -- BackgroundQueue's server side against a real
 * redis-server (started here, on a free port): jobs pushed as Sidekiq's
 * client writes them run once; outcomes, counters and the registry as
 * Sidekiq records them; recovery of a dead process's in-flight jobs, both
 * by expired heartbeat and by the same-machine check; graceful stop puts
 * prefetched jobs back in order. Named test_async_* so that scripts/test
 * also runs it under ThreadSanitizer (the I/O thread and the workers). */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/host.h"
#include "core/log.h"
#include "redis_server.h"
#include "test.h"

static wh_test_redis R;
static char root[256];

static void write_file(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void make_app(const char *extra_yaml) {
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "workers:\n  mode: BackgroundQueue\n  concurrency: 2\n  queues: [critical, default]\n"
             "  shutdown_timeout: 1\n%s"
             "queue:\n  uri: redis://127.0.0.1:%d/0\nlogger:\n  level: error\n",
             extra_yaml, R.port);
    write_file("config/test.yaml", yaml);
}

static redisContext *rc_connect(void) {
    redisContext *c = redisConnect("127.0.0.1", R.port);
    if (c == NULL || c->err) {
        fprintf(stderr, "cannot connect to the test redis\n");
        exit(1);
    }
    return c;
}

static long long get_int(redisContext *c, const char *fmt, const char *arg) {
    redisReply *r = redisCommand(c, fmt, arg);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER) v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING) v = atoll(r->str);
    else if (r && r->type == REDIS_REPLY_NIL) v = 0;
    freeReplyObject(r);
    return v;
}

static void cmd(redisContext *c, const char *fmt, const char *a, const char *b) {
    freeReplyObject(redisCommand(c, fmt, a, b));
}

/* waits up to `seconds` for `key` (a string counter) to reach want */
static bool wait_counter(redisContext *c, const char *key, long long want, double seconds) {
    for (int i = 0; i < (int)(seconds * 50); i++) {
        if (get_int(c, "GET %s", key) >= want) return true;
        usleep(20000);
    }
    return false;
}

static wh_host *start_host(void) {
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err;
    if (wh_host_new(&h, &o, &err) != 0 || wh_host_start(h, &err) != 0) {
        fprintf(stderr, "host: %s\n", err.msg);
        return NULL;
    }
    return h;
}

static void push(redisContext *c, const char *queue, const char *payload) {
    char key[128];
    snprintf(key, sizeof key, "queue:%s", queue);
    cmd(c, "LPUSH %s %s", key, payload);
}

/* More queues than one host can block on: a configuration error naming the
 * limit (the message once read the count after freeing the server). */
static void test_too_many_queues(void) {
    char yaml[2048] = "workers:\n  mode: BackgroundQueue\n  queues: [";
    for (int i = 0; i < 65; i++) {
        char q[16];
        snprintf(q, sizeof q, "%sq%d", i ? ", " : "", i);
        strcat(yaml, q);
    }
    char tail[128];
    snprintf(tail, sizeof tail, "]\nqueue:\n  uri: redis://127.0.0.1:%d/0\nlogger:\n  level: error\n", R.port);
    strcat(yaml, tail);
    write_file("config/test.yaml", yaml);
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err = WH_ERR_INIT;
    int rc = wh_host_new(&h, &o, &err);
    if (rc == 0) rc = wh_host_start(h, &err);
    ASSERT_EQ_INT(rc, WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, "needs 1 to 64 queues to fetch from");
    ASSERT_CONTAINS(err.msg, "got 65");
    wh_host_free(h);
}

static void test_jobs_run_once_and_are_recorded(void) {
    redisContext *c = rc_connect();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    make_app("");
    wh_host *h = start_host();
    ASSERT(h != NULL);
    char p[256];
    for (int i = 0; i < 300; i++) {
        snprintf(p, sizeof p, "{\"class\":\"Noop\",\"args\":[{\"n\":%d}],\"jid\":\"%024x\",\"queue\":\"default\","
                              "\"retry\":3,\"created_at\":1700000000.5,\"enqueued_at\":1700000000.5}", i, i);
        push(c, "default", p);
    }
    push(c, "default", "{\"class\":\"Noop\",\"args\":[{\"n\":\"x\"}],\"jid\":\"bad000000000000000000000\",\"retry\":3}");
    push(c, "default", "not json");
    ASSERT(wait_counter(c, "stat:processed", 301, 20));
    usleep(100000);
    ASSERT_EQ_INT(get_int(c, "GET %s", "stat:processed"), 301); /* not-JSON counts nothing */
    ASSERT_EQ_INT(get_int(c, "GET %s", "stat:failed"), 1);
    ASSERT_EQ_INT(get_int(c, "ZCARD %s", "dead"), 2);
    ASSERT_EQ_INT(get_int(c, "LLEN %s", "queue:default"), 0);
    ASSERT_EQ_INT(get_int(c, "SCARD %s", "processes"), 1);
    wh_host_stop(h, -1, NULL);
    wh_host_free(h);
    ASSERT_EQ_INT(get_int(c, "SCARD %s", "processes"), 0);
    ASSERT_EQ_INT(get_int(c, "SCARD %s", "wh:registry"), 0);
    static const char *const ours[] = {"KEYS wh:inflight:*", "KEYS wh:inflight-queues:*"};
    for (int k = 0; k < 2; k++) {
        redisReply *r = redisCommand(c, ours[k]);
        ASSERT(r && r->type == REDIS_REPLY_ARRAY);
        size_t left = r ? r->elements : 1;
        freeReplyObject(r);
        ASSERT_EQ_INT(left, 0);
    }
    redisFree(c);
}

/* A process that died (no heartbeat) left jobs in flight: the reaper of
 * the next host puts them back and they run. */
static void test_reaper_recovers_expired_process(void) {
    redisContext *c = rc_connect();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    make_app("");
    const char *dead = "gone-host:4242:abcdefabcdef";
    cmd(c, "SADD %s %s", "wh:registry", dead);
    cmd(c, "SADD %s %s", "wh:inflight-queues:gone-host:4242:abcdefabcdef", "default");
    for (int i = 0; i < 5; i++) {
        char p[200];
        snprintf(p, sizeof p, "{\"class\":\"Noop\",\"args\":[{\"n\":%d}],\"jid\":\"dead%020d\",\"retry\":3}", i, i);
        cmd(c, "LPUSH %s %s", "wh:inflight:gone-host:4242:abcdefabcdef:default", p);
    }
    wh_host *h = start_host();
    ASSERT(h != NULL);
    ASSERT(wait_counter(c, "stat:processed", 5, 10));
    ASSERT_EQ_INT(get_int(c, "LLEN %s", "wh:inflight:gone-host:4242:abcdefabcdef:default"), 0);
    ASSERT_EQ_INT(get_int(c, "SISMEMBER wh:registry %s", dead), 0);
    /* each recovery is counted against the job (poison-pill guard) */
    ASSERT_EQ_INT(get_int(c, "GET %s", "wh:recovered:dead00000000000000000000"), 1);
    wh_host_free(h);
    redisFree(c);
}

/* A process on this machine whose heartbeat is still fresh but whose pid
 * is gone (same boot, same pid namespace) is recovered at once. */
static void test_reaper_same_machine_check(void) {
    redisContext *c = rc_connect();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    make_app("");
    /* learn this machine's boot id and pid namespace from a live host's info */
    wh_host *probe = start_host();
    ASSERT(probe != NULL);
    char info[2048] = "";
    for (int i = 0; i < 100 && !info[0]; i++) {
        redisReply *m = redisCommand(c, "SMEMBERS processes");
        if (m && m->type == REDIS_REPLY_ARRAY && m->elements == 1) {
            redisReply *r = redisCommand(c, "HGET %s info", m->element[0]->str);
            if (r && r->type == REDIS_REPLY_STRING) snprintf(info, sizeof info, "%s", r->str);
            freeReplyObject(r);
        }
        freeReplyObject(m);
        usleep(20000);
    }
    wh_host_free(probe);
    ASSERT(info[0]);
    /* the same info, but for a pid that no process has (pid_max is far below) */
    char *pid = strstr(info, "\"pid\":");
    ASSERT(pid != NULL);
    char fake[2200];
    snprintf(fake, sizeof fake, "%.*s\"pid\":999999999%s", (int)(pid - info), info, strchr(pid, ','));
    const char *id = "this-host:999999999:aaaaaaaaaaaa";
    cmd(c, "HSET %s info %s", id, fake);
    cmd(c, "EXPIRE %s %s", id, "60"); /* a fresh heartbeat */
    cmd(c, "SADD %s %s", "wh:registry", id);
    cmd(c, "SADD %s %s", "wh:inflight-queues:this-host:999999999:aaaaaaaaaaaa", "critical");
    cmd(c, "LPUSH %s %s", "wh:inflight:this-host:999999999:aaaaaaaaaaaa:critical",
        "{\"class\":\"Noop\",\"args\":[{\"n\":1}],\"jid\":\"same0000000000000000000a\",\"retry\":3}");
    freeReplyObject(redisCommand(c, "DEL stat:processed"));
    wh_host *h = start_host();
    ASSERT(h != NULL);
    ASSERT(wait_counter(c, "stat:processed", 1, 10)); /* not 60 s: the heartbeat is still there */
    wh_host_free(h);
    redisFree(c);
}

/* Stop with prefetched jobs: they go back to the front of their queue, in
 * order (the oldest is popped first). */
static void test_stop_puts_jobs_back_in_order(void) {
    redisContext *c = rc_connect();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    make_app("");
    wh_host *h = start_host();
    ASSERT(h != NULL);
    usleep(200000);
    char p[256];
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "{\"class\":\"Slow\",\"args\":[{\"n\":%d}],\"jid\":\"slow%020d\",\"retry\":3}", i, i);
        push(c, "default", p);
    }
    usleep(300000); /* two are running (2 s each), four are prefetched */
    wh_host_stop(h, 0.2, NULL);
    wh_host_free(h);
    long long n = get_int(c, "LLEN %s", "queue:default");
    ASSERT_EQ_INT(n, 6); /* all back: two interrupted, four never started */
    /* popped from the right: 0, 1, 2, ... as pushed */
    for (int i = 0; i < 6; i++) {
        redisReply *r = redisCommand(c, "RPOP queue:default");
        ASSERT(r && r->type == REDIS_REPLY_STRING);
        char want[64];
        snprintf(want, sizeof want, "\"jid\":\"slow%020d\"", i);
        if (r) ASSERT_CONTAINS(r->str, want);
        freeReplyObject(r);
    }
    ASSERT_EQ_INT(get_int(c, "GET %s", "stat:failed"), 0); /* interrupted by the stop: not a failure */
    redisFree(c);
}

static char *rpop(redisContext *c, const char *key) {
    redisReply *r = redisCommand(c, "RPOP %s", key);
    char *v = (r && r->type == REDIS_REPLY_STRING) ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

/* wh_host_enqueue and wh_host_enqueue_bulk push to Redis as Sidekiq's client
 * does; a refused job in a bulk queues nothing; wh.enqueue inside a job
 * pushes too; every pushed job runs. */
static void test_enqueue_into_redis(void) {
    redisContext *c = rc_connect();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    make_app("");
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err;
    ASSERT_EQ_INT(wh_host_new(&h, &o, &err), 0);
    char jid[WH_JID_SIZE];
    ASSERT_EQ_INT(wh_host_enqueue(h, "Noop", "{\"n\":7}", 7, NULL, jid, &err), 0);
    ASSERT_EQ_INT(strlen(jid), 24);
    ASSERT_EQ_INT(get_int(c, "LLEN %s", "queue:default"), 1);
    ASSERT_EQ_INT(get_int(c, "SISMEMBER queues %s", "default"), 1);
    char *p = rpop(c, "queue:default");
    ASSERT(p != NULL);
    if (p) {
        ASSERT_CONTAINS(p, "\"class\":\"Noop\"");
        ASSERT_CONTAINS(p, "\"args\":[{\"n\":7}]");
        ASSERT_CONTAINS(p, jid);
        ASSERT_CONTAINS(p, "\"enqueued_at\":");
    }
    free(p);

    const char *args[] = {"{\"n\":1}", "{\"n\":2}", "{\"n\":3}"};
    size_t lens[] = {7, 7, 7};
    char jids[3][WH_JID_SIZE];
    ASSERT_EQ_INT(wh_host_enqueue_bulk(h, "Noop", args, lens, 3, NULL, jids, &err), 0);
    ASSERT_EQ_INT(get_int(c, "LLEN %s", "queue:default"), 3);
    for (int i = 0; i < 3; i++) { /* the first given is popped first */
        char *q = rpop(c, "queue:default");
        ASSERT(q != NULL);
        if (q) ASSERT_CONTAINS(q, jids[i]);
        free(q);
    }
    const char *bad[] = {"{\"n\":1}", "{\"n\":\"two\"}", "{\"n\":3}"};
    size_t blens[] = {7, 11, 7};
    ASSERT_EQ_INT(wh_host_enqueue_bulk(h, "Noop", bad, blens, 3, NULL, NULL, &err), WH_EARGS);
    ASSERT_CONTAINS(err.msg, "job 2 of 3");
    ASSERT_EQ_INT(get_int(c, "LLEN %s", "queue:default"), 0);

    /* run: 3 pushed + 1 chained from inside a job */
    ASSERT_EQ_INT(wh_host_enqueue_bulk(h, "Noop", args, lens, 3, NULL, NULL, &err), 0);
    ASSERT_EQ_INT(wh_host_enqueue(h, "Chain", "{\"n\":9}", 7, NULL, NULL, &err), 0);
    ASSERT_EQ_INT(wh_host_enqueue(h, "Fan", "{\"n\":3}", 7, NULL, NULL, &err), 0);
    ASSERT_EQ_INT(wh_host_start(h, &err), 0);
    /* 3 + Chain and its job + Fan and its 3 (its refused bulk queued nothing) */
    ASSERT(wait_counter(c, "stat:processed", 9, 10));
    usleep(200000);
    ASSERT_EQ_INT(get_int(c, "GET %s", "stat:processed"), 9);
    ASSERT_EQ_INT(get_int(c, "GET %s", "stat:failed"), 0);
    wh_host_free(h);
    redisFree(c);
}

/* With Redis unreachable, enqueue fails fast with WH_EUNAVAIL. */
static void test_enqueue_redis_down(void) {
    char yaml[512];
    snprintf(yaml, sizeof yaml, "workers:\n  mode: BackgroundQueue\n  concurrency: 1\nqueue:\n"
                                "  uri: redis://127.0.0.1:1/0\nlogger:\n  level: error\n");
    write_file("config/down.yaml", yaml);
    wh_host_options o = {root, "down", NULL};
    wh_host *h = NULL;
    wh_err err;
    ASSERT_EQ_INT(wh_host_new(&h, &o, &err), 0);
    ASSERT_EQ_INT(wh_host_enqueue(h, "Noop", "{\"n\":1}", 7, NULL, NULL, &err), WH_EUNAVAIL);
    ASSERT_CONTAINS(err.msg, "redis://127.0.0.1:1/0");
    wh_host_free(h);
}

int main(void) {
    wh_log_setup(WH_LOG_ERROR, WH_LOG_TEXT);
    (void)wh_test_redis_pause;
    if (!wh_test_redis_available() || wh_test_redis_start(&R, NULL) != 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    snprintf(root, sizeof root, "/tmp/wh_test_queue_XXXXXX");
    if (mkdtemp(root) == NULL) return 1;
    char d[512];
    snprintf(d, sizeof d, "%s/workers", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/config", root);
    mkdir(d, 0755);
    write_file("workers/noop.lua", "local wh = require 'workerhost'\n"
                                   "return wh.worker { args = { n = 'integer' }, perform = function() end }\n");
    write_file("workers/slow.lua", "local wh = require 'workerhost'\n"
                                   "return wh.worker { args = { n = 'integer' }, perform = function()\n"
                                   "  local t = os.time() + 2 while os.time() < t do end end }\n");
    write_file("workers/fan.lua", "local wh = require 'workerhost'\n"
                                  "return wh.worker { args = { n = 'integer' }, perform = function(a)\n"
                                  "  local list = {}\n"
                                  "  for i = 1, a.n do list[i] = { n = i } end\n"
                                  "  local ids = wh.enqueue_bulk('Noop', list)\n"
                                  "  assert(#ids == a.n and #ids[1] == 24 and ids[1] ~= ids[2])\n"
                                  "  local ok, e = pcall(wh.enqueue_bulk, 'Noop', { { n = 1 }, { n = 'x' } })\n"
                                  "  assert(not ok and e:find('job 2 of 2', 1, true), e) end }\n");
    write_file("workers/chain.lua", "local wh = require 'workerhost'\n"
                                    "return wh.worker { args = { n = 'integer' }, perform = function(a)\n"
                                    "  assert(#wh.enqueue('Noop', { n = a.n + 1 }) == 24) end }\n");
    RUN(test_too_many_queues);
    RUN(test_jobs_run_once_and_are_recorded);
    RUN(test_reaper_recovers_expired_process);
    RUN(test_reaper_same_machine_check);
    RUN(test_stop_puts_jobs_back_in_order);
    RUN(test_enqueue_into_redis);
    RUN(test_enqueue_redis_down);
    wh_test_redis_stop(&R);
    wh_test_rm_tree(root);
    return TEST_REPORT();
}
