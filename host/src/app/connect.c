/* connect.c -- the workerhost.connect module and the "wh.Client" userdata
 * it returns; see connect.h.
 * SPDX-License-Identifier: MIT
 *
 * Ownership: every C resource lives in a userdata whose __gc frees it before
 * anything that may raise runs: the client's config, catalog and connection
 * in the client; the jobs of enqueue_bulk and the result of stats in
 * short-lived holder userdata. */
#include "app/connect.h"

#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "app/catalog.h"
#include "app/job.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/mem.h"
#include "lua/lconvert.h"
#include "lua/lmodule.h"
#include "redis/client.h"
#include "redis/uri.h"

#define CLIENT_MT "wh.Client"
#define JOBS_MT "wh.Client.jobs"   /* holder: jobs of one enqueue_bulk */
#define STATS_MT "wh.Client.stats" /* holder: one wh_redis_stats */
#define DEFAULT_TIMEOUT 2.0

static void init_metatables(lua_State *L);

typedef struct lclient {
    wh_config *cfg;          /* owned, or NULL once closed */
    wh_catalog *cat;         /* owned */
    wh_redis_client *client; /* owned */
} lclient;

typedef struct jobs_holder {
    wh_job **jobs; /* owned, n of them */
    size_t n;
    wh_json_doc *pending; /* arguments being checked, owned */
} jobs_holder;

typedef struct stats_holder {
    wh_redis_stats s;
} stats_holder;

/* ---- release ---- */

static void client_release(lclient *u) {
    wh_redis_client_free(u->client);
    wh_catalog_release(u->cat);
    wh_config_free(u->cfg);
    memset(u, 0, sizeof *u);
}

/* __gc, __close and close(): idempotent. */
static int l_client_close(lua_State *L) {
    client_release(luaL_checkudata(L, 1, CLIENT_MT));
    return 0;
}

static void jobs_release(jobs_holder *j) {
    for (size_t i = 0; i < j->n; i++) wh_job_free(j->jobs[i]);
    wh_free(j->jobs);
    wh_json_doc_free(j->pending);
    memset(j, 0, sizeof *j);
}

static int l_jobs_gc(lua_State *L) {
    jobs_release(luaL_checkudata(L, 1, JOBS_MT));
    return 0;
}

static int l_stats_gc(lua_State *L) {
    wh_redis_stats_free(&((stats_holder *)luaL_checkudata(L, 1, STATS_MT))->s);
    return 0;
}

/* ---- helpers ---- */

/* The open client at idx; raises when closed. [-0,+0,v] */
static lclient *check_open(lua_State *L, int idx, const char *method) {
    lclient *u = luaL_checkudata(L, idx, CLIENT_MT);
    if (u->cfg == NULL) luaL_error(L, "client:%s: the client is closed", method);
    return u;
}

/* The worker definition of `name`; raises for an unknown class. [-0,+0,v] */
static const wh_worker_def *check_class(lua_State *L, lclient *u, const char *name, const char *method) {
    const wh_worker_def *def = wh_catalog_find(u->cat, name);
    if (def) return def;
    wh_err err;
    wh_catalog_unknown_class(u->cat, name, &err);
    luaL_error(L, "client:%s: %s", method, err.msg);
    return NULL;
}

/* Pushes nil and the message; returns 2. */
static int push_fail(lua_State *L, const wh_err *err) {
    luaL_pushfail(L);
    lua_pushstring(L, err->msg);
    return 2;
}

/* ---- workerhost.connect ---- */

static const char *opt_string(lua_State *L, int t, const char *key) {
    if (lua_getfield(L, t, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "workerhost.connect: option %s must be a string, got %s", key, luaL_typename(L, -1));
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the options table */
    return s;
}

int wh_connect_new(lua_State *L) {
    const char *uri_arg = luaL_optstring(L, 1, NULL);
    const char *root = NULL, *env = NULL, *file = NULL, *ns = NULL;
    double timeout = DEFAULT_TIMEOUT;
    bool ns_given = false;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2) != 0) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "root") && strcmp(k, "env") && strcmp(k, "config") && strcmp(k, "namespace") &&
                strcmp(k, "timeout"))
                luaL_error(L, "workerhost.connect: unknown option \"%s\" (known: root, env, config, namespace, timeout)",
                           k);
            lua_pop(L, 1);
        }
        root = opt_string(L, 2, "root");
        env = opt_string(L, 2, "env");
        file = opt_string(L, 2, "config");
        ns = opt_string(L, 2, "namespace");
        ns_given = ns != NULL;
        if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || !isfinite(lua_tonumber(L, -1)) ||
                lua_tonumber(L, -1) > 86400)
                luaL_error(L, "workerhost.connect: option timeout must be a number of seconds > 0");
            timeout = (double)lua_tonumber(L, -1);
        }
        lua_pop(L, 1);
    }

    init_metatables(L);
    lclient *u = lua_newuserdatauv(L, sizeof *u, 0); /* closed state first */
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, CLIENT_MT);

    wh_err err = WH_ERR_INIT;
    wh_config_source src = {root, env, file};
    if (wh_config_load(&u->cfg, &src, &err) != 0) luaL_error(L, "workerhost.connect: %s", err.msg);
    if (wh_catalog_load(u->cfg, &u->cat, &err) != 0) luaL_error(L, "workerhost.connect: %s", err.msg);
    if (!ns_given) ns = u->cfg->queue_namespace;

    wh_redis_uri uri;
    if (wh_redis_uri_parse(uri_arg ? uri_arg : u->cfg->queue_uri, &uri, &err) != 0)
        luaL_error(L, "workerhost.connect: %s", err.msg); /* nothing held: a failed parse frees */
    int rc = wh_redis_client_connect(&uri, ns, timeout, &u->client, &err);
    wh_redis_uri_free(&uri);
    if (rc != 0) {
        client_release(u);
        return push_fail(L, &err);
    }
    return 1;
}

/* ---- methods ---- */

/* client:enqueue(name, args, opts) -> jid | nil, message */
static int l_client_enqueue(lua_State *L) {
    lclient *u = check_open(L, 1, "enqueue");
    const char *name = luaL_checkstring(L, 2);
    wh_enqueue_options o;
    wh_lmodule_check_enqueue_options(L, 4, &o);
    const wh_worker_def *def = check_class(L, u, name, "enqueue");
    wh_err err = WH_ERR_INIT;
    wh_json_doc *doc = NULL;
    int rc = wh_lconvert_call_args(L, 3, def->schema, &doc, &err);
    if (rc == 0) rc = wh_schema_check_call_args(def->schema, wh_json_doc_root(doc), &err);
    if (rc != 0) {
        wh_json_doc_free(doc);
        return luaL_error(L, "client:enqueue: %s: %s", name, err.msg);
    }
    double now = wh_clock_wall();
    wh_job *job = wh_job_new(def, doc, wh_json_doc_root(doc), &o, now); /* takes doc */
    char jid[WH_JID_SIZE];
    memcpy(jid, job->jid, sizeof jid);
    wh_buf text = WH_BUF_INIT;
    wh_redis_item item;
    rc = wh_job_redis_items(&job, 1, now, &text, &item, &err);
    if (rc == 0) rc = wh_redis_client_push(u->client, &item, &err);
    wh_buf_free(&text);
    wh_job_free(job);
    if (rc != 0) return push_fail(L, &err);
    lua_pushstring(L, jid);
    return 1;
}

/* client:enqueue_bulk(name, list_of_args, opts) -> { jid, ... } | nil, message
 * Every item is checked first; a refused one raises and nothing is pushed. */
static int l_client_enqueue_bulk(lua_State *L) {
    lclient *u = check_open(L, 1, "enqueue_bulk");
    const char *name = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    wh_enqueue_options o;
    wh_lmodule_check_enqueue_options(L, 4, &o);
    const wh_worker_def *def = check_class(L, u, name, "enqueue_bulk");
    size_t n = (size_t)lua_rawlen(L, 3);

    jobs_holder *j = lua_newuserdatauv(L, sizeof *j, 0); /* owns the jobs from here on */
    memset(j, 0, sizeof *j);
    luaL_setmetatable(L, JOBS_MT);
    int holder = lua_gettop(L);
    j->jobs = wh_xcalloc(n ? n : 1, sizeof *j->jobs);
    double now = wh_clock_wall();
    wh_err err = WH_ERR_INIT;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 3, (lua_Integer)i + 1);
        int rc = wh_lconvert_call_args(L, -1, def->schema, &j->pending, &err);
        if (rc == 0) rc = wh_schema_check_call_args(def->schema, wh_json_doc_root(j->pending), &err);
        if (rc != 0) {
            jobs_release(j);
            return luaL_error(L, "client:enqueue_bulk: %s: item %d: %s", name, (int)(i + 1), err.msg);
        }
        j->jobs[j->n++] = wh_job_new(def, j->pending, wh_json_doc_root(j->pending), &o, now);
        j->pending = NULL;
        lua_pop(L, 1);
    }
    wh_buf text = WH_BUF_INIT;
    wh_redis_item *items = wh_xcalloc(j->n ? j->n : 1, sizeof *items);
    int rc = wh_job_redis_items(j->jobs, j->n, now, &text, items, &err);
    if (rc == 0) rc = wh_redis_client_push_bulk(u->client, items, j->n, &err);
    wh_free(items);
    wh_buf_free(&text);
    if (rc != 0) {
        jobs_release(j);
        return push_fail(L, &err);
    }
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < j->n; i++) {
        lua_pushstring(L, j->jobs[i]->jid);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    jobs_release(j);
    lua_remove(L, holder);
    return 1;
}

static void set_int(lua_State *L, const char *k, long long v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, (lua_Number)v);
    lua_setfield(L, -2, k);
}

/* client:stats() -> table | nil, message */
static int l_client_stats(lua_State *L) {
    lclient *u = check_open(L, 1, "stats");
    stats_holder *h = lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, STATS_MT);
    int holder = lua_gettop(L);
    wh_err err = WH_ERR_INIT;
    if (wh_redis_client_stats(u->client, &h->s, &err) != 0) return push_fail(L, &err);
    const wh_redis_stats *s = &h->s;
    lua_createtable(L, 0, 12);
    set_num(L, "now", s->now);
    set_int(L, "processed", s->processed);
    set_int(L, "failed", s->failed);
    set_int(L, "enqueued", s->enqueued);
    set_int(L, "scheduled", s->scheduled);
    set_int(L, "retries", s->retries);
    set_int(L, "dead", s->dead);
    set_int(L, "in_flight", s->in_flight);
    set_int(L, "busy", s->busy);
    lua_createtable(L, (int)s->nqueues, 0);
    for (size_t i = 0; i < s->nqueues; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, s->queues[i].name);
        lua_setfield(L, -2, "name");
        set_int(L, "size", s->queues[i].size);
        set_num(L, "latency", s->queues[i].latency);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "queues");
    lua_createtable(L, (int)s->nprocesses, 0);
    for (size_t i = 0; i < s->nprocesses; i++) {
        const wh_redis_process_stat *p = &s->processes[i];
        lua_createtable(L, 0, 7);
        lua_pushstring(L, p->identity);
        lua_setfield(L, -2, "identity");
        if (p->hostname) {
            lua_pushstring(L, p->hostname);
            lua_setfield(L, -2, "hostname");
        }
        set_int(L, "pid", p->pid);
        set_int(L, "busy", p->busy);
        set_int(L, "concurrency", p->concurrency);
        lua_pushboolean(L, p->quiet);
        lua_setfield(L, -2, "quiet");
        set_num(L, "beat", p->beat);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "processes");
    wh_redis_stats_free(&h->s);
    lua_remove(L, holder);
    return 1;
}

static int l_client_tostring(lua_State *L) {
    lclient *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->client) lua_pushfstring(L, "workerhost client (%s)", wh_redis_client_uri_shown(u->client));
    else lua_pushliteral(L, "workerhost client (closed)");
    return 1;
}

static const luaL_Reg client_methods[] = {
    {"enqueue", l_client_enqueue},
    {"enqueue_bulk", l_client_enqueue_bulk},
    {"stats", l_client_stats},
    {"close", l_client_close},
    {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", l_client_close},
    {"__close", l_client_close},
    {"__tostring", l_client_tostring},
    {"__index", NULL}, /* set below */
    {NULL, NULL},
};

static void init_metatables(lua_State *L) {
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_setfuncs(L, client_meta, 0);
        luaL_newlib(L, client_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, JOBS_MT)) {
        lua_pushcfunction(L, l_jobs_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, STATS_MT)) {
        lua_pushcfunction(L, l_stats_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

int wh_connect_open(lua_State *L) {
    init_metatables(L);
    lua_pushcfunction(L, wh_connect_new);
    return 1;
}
