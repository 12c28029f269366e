/* lschema.h -- compiles a worker's `args` declaration (Lua values) into a C
 * schema (schema/schema.h).
 *
 * A type is written as a shorthand string ("string", "integer?", ...) or as a
 * table made by the constructors of workerhost.lua (wh.types.array(...), ...),
 * recognised by its metatable. See the README, "Types". */
#ifndef WH_LSCHEMA_H
#define WH_LSCHEMA_H

#include <lua.h>
#include <stdbool.h>

#include "core/err.h"
#include "schema/schema.h"

/* Registry key of the metatable that marks type tables. */
extern const char wh_lschema_type_mt_key;

/* Compiles the declaration at idx (nil, or a table of named fields, or a list
 * of positional types). allow_unknown applies to the top-level object.
 * Returns an owned schema (release with wh_schema_release), or NULL with err
 * set (WH_ESCRIPT, e.g. "args.count: unknown type \"int\" (known: string,
 * integer, number, boolean, any)"). Does not raise, except on out-of-memory.
 * [-0, +0, m] */
wh_schema *wh_lschema_compile(lua_State *L, int idx, bool allow_unknown, wh_err *err);

#endif
