/* connect.h -- workerhost.connect: a Redis client for plain Lua programs
 * (and workers) that enqueue into BackgroundQueue with the same C check as
 * the host, whatever workers.mode the app's configuration names.
 * SPDX-License-Identifier: MIT
 *
 *   local wh = require "workerhost"
 *   local c = assert(wh.connect("redis://127.0.0.1:6379/0", { root = "/srv/app" }))
 *   local jid = c:enqueue("DownloadWorker", { user_guid = "foo" }, { ["in"] = 60 })
 *   local jids = c:enqueue_bulk("DownloadWorker", { { user_guid = "a" }, { user_guid = "b" } })
 *   local s = c:stats()     -- processed, failed, queues = { {name=, size=, latency=}, ... }, ...
 *   c:close()               -- also on garbage collection, and with `local c <close> = ...`
 *
 * wh.connect(uri, opts): uri may be nil (the config's queue.uri); opts: root
 * (default "."), env, config (a config file), namespace (default
 * queue.namespace; "" for none), timeout (seconds for the connect and each
 * command, default 2). It loads the app's configuration and worker scripts
 * (their argument schemas are what enqueue checks against).
 *
 * Failure style (the style guide): Redis unreachable or refusing the login
 * returns nil, message (connect, enqueue, enqueue_bulk, stats). Misuse
 * raises: bad options, a bad URI, a configuration or script error, an
 * unknown class, arguments the check refuses (the message names the path),
 * a closed client. Nothing raises while C holds a resource no Lua object
 * owns.
 *
 * A client is one connection: use it from one Lua state (Lua states are
 * single-threaded anyway). */
#ifndef WH_CONNECT_H
#define WH_CONNECT_H

#include <lua.h>

/* workerhost.connect(uri, opts) -> client | nil, message. lua_CFunction. */
int wh_connect_new(lua_State *L);

/* The opener of the "workerhost.connect" module (a lua_CFunction for
 * package.preload or luaL_requiref): registers the "wh.Client" metatable
 * (methods enqueue, enqueue_bulk, stats, close; __gc and __close share one
 * idempotent release) and the private metatables of its temporaries, and
 * returns wh_connect_new. The workerhost module (lua/lmodule.h) sets it as
 * wh.connect when the state preloads it: app/catalog.c does for every VM
 * it builds, and app/module.c for workerhost.so. [-0,+1,m] */
int wh_connect_open(lua_State *L);

#endif
