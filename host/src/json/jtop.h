/* jtop.h -- the top-level members of a JSON object, read and rewritten
 * straight from its text: no tree, memory independent of the text's size.
 *
 * Made for the BackgroundQueue scheduler, which moves due jobs from the
 * retry and schedule sets to their queues and only needs to set
 * "enqueued_at" and read "queue": a payload of any size costs one pass over
 * its bytes and a copy into the output, not a tree of 8x its size.
 *
 * Both functions validate the whole text as they go, with the rules of
 * wh_json_parse: exactly one value with only JSON whitespace (space, \t,
 * \n, \r) around it, strict grammar (no comments, no trailing commas,
 * numbers as in RFC 8259), strings of valid UTF-8 without control bytes,
 * valid escapes only and no lone surrogate escapes, nesting at most
 * WH_JSON_DEFAULT_MAX_DEPTH (64) deep, and a top-level key given twice is
 * refused when it is the one asked for. Unlike wh_json_parse they do not
 * look for duplicate keys elsewhere (that needs memory in proportion to the
 * keys); the worker thread's wh_json_parse still refuses such a payload.
 * Keys are compared after unescaping, so "enqueued\u005fat" is enqueued_at.
 *
 * Errors: WH_EJSON with "invalid JSON at byte N: ..." (0-based offset) for
 * text that is not JSON, and "invalid JSON: the payload is <type>, not an
 * object" for a valid non-object; WH_EINVAL for a bad call.
 *
 * Threads: no state; any thread may call them at once. */
#ifndef WH_JTOP_H
#define WH_JTOP_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Appends to out the object in json (len bytes) with its top-level member
 * `key` (NUL-terminated, unescaped) set to value_json (value_len bytes, one
 * JSON value, written as given):
 *   - if the member is there, only its value's bytes are replaced, in
 *     place: the key as written, the whitespace around it and every other
 *     byte of the text (numbers, escapes, members nested deeper with the
 *     same name, whitespace) are copied unchanged;
 *   - if not, `,"key":value` is inserted right after the last member's
 *     value (`"key":value` after the '{' of an empty object).
 * Returns 0, or WH_EJSON for json that is not a valid object, or
 * WH_EINVAL when value_json is not exactly one valid JSON value or key is
 * NULL. On error out may hold part of the copy: discard it. */
int wh_jtop_rewrite(const char *json, size_t len, const char *key, const char *value_json,
                    size_t value_len, wh_buf *out, wh_err *err);

/* Looks up the top-level member `key` (NUL-terminated) of the object in
 * json and, when its value is a string, appends that string unescaped (the
 * UTF-8 bytes, which may include NUL) to value. Returns 1 when found as a
 * string, 0 when absent or not a string (value untouched), WH_EJSON as for
 * wh_jtop_rewrite (value may then hold part of the string: discard it). */
int wh_jtop_string(const char *json, size_t len, const char *key, wh_buf *value, wh_err *err);

#endif
