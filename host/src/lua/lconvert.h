/* lconvert.h -- values between JSON trees (json/json.h) and Lua.
 *
 * The JSON-to-Lua mapping (documented in the README, "Types"):
 *   null              -> wh.null (a light userdata equal to cjson.null) where a
 *                        value must exist (array items, `any`); an optional
 *                        field that is null or absent is nil (or its default)
 *   true/false        -> boolean
 *   integer literal   -> Lua integer (exact int64)
 *   other number      -> Lua float
 *   string            -> Lua string (bytes as sent)
 *   array             -> sequence table; an empty array in an `any` position
 *                        gets the metatable wh.array_mt so it goes back as []
 *   object            -> table with string keys
 * Lua to JSON is the reverse, guided by the schema where it helps: an empty
 * table is [] where an array is expected, {} where an object is, and in `any`
 * positions [] only if it carries wh.array_mt. */
#ifndef WH_LCONVERT_H
#define WH_LCONVERT_H

#include <lua.h>

#include "core/buf.h"
#include "core/err.h"
#include "json/json.h"
#include "schema/schema.h"

/* Registry keys (light userdata addresses) shared by the binding layer. */
extern const char wh_lconvert_array_mt_key;

/* Pushes the array metatable (creating it on first use). [-0, +1, m] */
void wh_lconvert_push_array_mt(lua_State *L);

/* Pushes v as a Lua value, shaped by t (NULL = any): for objects, absent or
 * null fields with a default get the default. [-0, +1, m] */
void wh_lconvert_push(lua_State *L, const wh_json *v, const wh_type *t);

/* Pushes what perform receives as `args` for a payload `args` array already
 * checked against s: the object (NAMED), a sequence (POSITIONAL), or an empty
 * table (NONE). [-0, +1, m] */
void wh_lconvert_push_payload_args(lua_State *L, const wh_schema *s, const wh_json *args);

/* Converts the Lua value at idx into *out, allocating in doc. t (may be NULL)
 * guides empty tables. `path` is the path so far, used in messages.
 * Returns 0 or WH_EARGS ("args.f: cannot send a function as a job argument",
 * invalid UTF-8, NaN, a mixed or sparse table, nesting deeper than 64), or
 * WH_ENOMEM when the system refuses memory for doc (allocated with the
 * wh_json_doc_try_* calls: this runs on behalf of a job, in its thread).
 * Does not raise, except when Lua runs out of memory. [-0, +0, m] */
int wh_lconvert_to_json(lua_State *L, int idx, const wh_type *t, wh_json_doc *doc, wh_json *out,
                        wh_buf *path, wh_err *err);

/* The call-shaped arguments for schema s: the Lua value at idx (a table, or
 * nil for no arguments) into a new owned document (*out_doc; free with
 * wh_json_doc_free). Returns 0, WH_EARGS or WH_ENOMEM (as above); *out_doc
 * is NULL on failure. */
int wh_lconvert_call_args(lua_State *L, int idx, const wh_schema *s, wh_json_doc **out_doc, wh_err *err);

#endif
