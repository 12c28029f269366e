/* scripts.c -- see scripts.h.
 *
 * Two rules every script here keeps, because Redis does not roll a script
 * back when a command inside it fails (the writes before it stay):
 *   1. everything that can fail is checked before the first write: key
 *      types (another client may have made any key a string), membership;
 *   2. a job is written to where it goes before it is removed from where it
 *      was, so a failure that slips past (1) leaves a copy, never nothing.
 * (Under maxmemory, Redis refuses only a script's first write that may grow
 * memory; after that the script runs to its end.) Times come from Redis's
 * TIME, one clock for every host of the fleet. */
#include "redis/scripts.h"

#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "redis/keys.h"

/* check(key, type): nil when the key holds that type or nothing, else an
 * error reply naming the key, for the script to return before any write. */
#define CHECK_FN                                                                          \
    "local function check(key, want)\n"                                                   \
    "  local t = redis.call('TYPE', key).ok\n"                                            \
    "  if t ~= want and t ~= 'none' then\n"                                               \
    "    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. want)\n" \
    "  end\n"                                                                             \
    "end\n"

#define NOW                                  \
    "local tm = redis.call('TIME')\n"        \
    "local now = tonumber(tm[1]) + tonumber(tm[2]) / 1000000\n"

const char wh_script_migrate[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then return 'ok' end\n"
    "if not v then redis.call('SET', KEYS[1], ARGV[1]) return 'ok' end\n"
    "if v ~= '1' then return 'version ' .. v end\n"
    "local ids = redis.call('SMEMBERS', KEYS[2])\n"
    "for _, id in ipairs(ids) do\n"
    "  if redis.call('EXISTS', ARGV[2] .. id) == 1 then return 'live ' .. id end\n"
    "end\n"
    "for _, id in ipairs(ids) do\n"
    "  local old = ARGV[3] .. id .. ARGV[4]\n"
    "  if redis.call('TYPE', old).ok == 'set' then redis.call('RENAME', old, ARGV[5] .. id) end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "return 'migrated'\n";

const char wh_script_register[] =
    CHECK_FN
    "if redis.call('GET', KEYS[3]) ~= ARGV[2] then\n"
    "  return redis.error_reply('WHLAYOUT ' .. KEYS[3] .. ' is not ' .. ARGV[2] .. ' any more')\n"
    "end\n"
    "local e = check(KEYS[1], 'set') or check(KEYS[2], 'set')\n"
    "if e then return e end\n"
    "local was = redis.call('SISMEMBER', KEYS[1], ARGV[1])\n"
    "local complete = was == 1\n"
    "if complete then\n"
    "  for _, m in ipairs(redis.call('SMISMEMBER', KEYS[2], unpack(ARGV, 3))) do\n"
    "    if m == 0 then complete = false break end\n"
    "  end\n"
    "end\n"
    "if complete then return 1 end\n"
    "redis.call('SADD', KEYS[2], unpack(ARGV, 3))\n"
    "redis.call('SADD', KEYS[1], ARGV[1])\n"
    "return was\n";

const char wh_script_fetch[] =
    CHECK_FN
    "if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then return -1 end\n"
    "local want = tonumber(ARGV[1])\n"
    "local nq = (#KEYS - 1) / 2\n"
    "local out = {}\n"
    "for q = 1, nq do\n"
    "  out[q] = (check(KEYS[2 * q], 'list') or check(KEYS[2 * q + 1], 'list')) and -1 or 0\n"
    "end\n"
    "for q = 1, nq do\n"
    "  local src, dst = KEYS[2 * q], KEYS[2 * q + 1]\n"
    "  local items = out[q] == 0 and redis.call('LRANGE', src, -want, -1) or {}\n"
    "  local n = #items\n"
    "  if n > 0 then\n"
    "    local oldest_first = {}\n"
    "    for k = n, 1, -1 do\n"
    "      oldest_first[#oldest_first + 1] = items[k]\n"
    "      out[#out + 1] = items[k]\n"
    "    end\n"
    "    redis.call('LPUSH', dst, unpack(oldest_first))\n"
    "    redis.call('LTRIM', src, 0, -n - 1)\n"
    "    out[q] = n\n"
    "    want = want - n\n"
    "    if want == 0 then break end\n"
    "  end\n"
    "end\n"
    "return out\n";

const char wh_script_ack[] =
    CHECK_FN
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return -1 end\n"
    "local seen = {}\n"
    "for k = 2, #KEYS do\n"
    "  if not seen[KEYS[k]] then\n"
    "    seen[KEYS[k]] = true\n"
    "    local e = check(KEYS[k], k <= 5 and 'string' or k <= 7 and 'zset' or 'list')\n"
    "    if e then return e end\n"
    "  end\n"
    "end\n"
    NOW
    "local processed, failed, dead = 0, 0, false\n"
    "local j = 5\n"
    "for k = 8, #KEYS do\n"
    "  local payload, kind, newp, delay = ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3]\n"
    "  j = j + 4\n"
    "  if redis.call('LREM', KEYS[k], -1, payload) == 1 then\n"
    "    if kind == 'n' then\n"
    "      redis.call('ZADD', KEYS[7], now, payload); dead = true\n"
    "    else\n"
    "      processed = processed + 1\n"
    "      if kind == 'r' then failed = failed + 1; redis.call('ZADD', KEYS[6], now + tonumber(delay), newp)\n"
    "      elseif kind == 'd' then failed = failed + 1; redis.call('ZADD', KEYS[7], now, newp); dead = true\n"
    "      elseif kind == 'x' then failed = failed + 1 end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if dead then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (now - tonumber(ARGV[3])))\n"
    "  redis.call('ZREMRANGEBYRANK', KEYS[7], 0, -tonumber(ARGV[4]))\n"
    "end\n"
    "if processed > 0 then\n"
    "  redis.call('INCRBY', KEYS[2], processed)\n"
    "  redis.call('INCRBY', KEYS[4], processed)\n"
    "  redis.call('EXPIRE', KEYS[4], ARGV[2])\n"
    "end\n"
    "if failed > 0 then\n"
    "  redis.call('INCRBY', KEYS[3], failed)\n"
    "  redis.call('INCRBY', KEYS[5], failed)\n"
    "  redis.call('EXPIRE', KEYS[5], ARGV[2])\n"
    "end\n"
    "return processed\n";

const char wh_script_due[] =
    NOW
    "return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))\n";

const char wh_script_move_due[] =
    CHECK_FN
    "local e = check(KEYS[2], 'set') or check(KEYS[3], 'zset')\n"
    "if e then return e end\n"
    NOW
    "local moved, dead = 0, 0\n"
    "for i = 2, #ARGV, 3 do\n"
    "  local m, p, q = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
    "  if redis.call('ZSCORE', KEYS[1], m) then\n"
    "    local to_dead = q == ''\n"
    "    if not to_dead then\n"
    "      local t = redis.call('TYPE', ARGV[1] .. q).ok\n"
    "      to_dead = t ~= 'list' and t ~= 'none'\n"
    "    end\n"
    "    if to_dead then\n"
    "      redis.call('ZADD', KEYS[3], now, m)\n"
    "      dead = dead + 1\n"
    "    else\n"
    "      redis.call('LPUSH', ARGV[1] .. q, p)\n"
    "      redis.call('SADD', KEYS[2], q)\n"
    "      moved = moved + 1\n"
    "    end\n"
    "    redis.call('ZREM', KEYS[1], m)\n"
    "  end\n"
    "end\n"
    "return {moved, dead}\n";

const char wh_script_requeue[] =
    "local moved, left = 0, 0\n"
    "for i = 1, #KEYS, 2 do\n"
    "  if redis.call('TYPE', KEYS[i]).ok == 'list' then\n"
    "    local tq = redis.call('TYPE', KEYS[i + 1]).ok\n"
    "    if tq == 'list' or tq == 'none' then\n"
    "      while redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT') do moved = moved + 1 end\n"
    "    else\n"
    "      left = left + redis.call('LLEN', KEYS[i])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {moved, left}\n";

const char wh_script_reconcile[] =
    "local pos, moved = 1, 0\n"
    "for i = 1, #KEYS, 2 do\n"
    "  local held = {}\n"
    "  local n = tonumber(ARGV[pos])\n"
    "  for k = pos + 1, pos + n do held[ARGV[k]] = (held[ARGV[k]] or 0) + 1 end\n"
    "  pos = pos + n + 1\n"
    "  local tq = redis.call('TYPE', KEYS[i + 1]).ok\n"
    "  if redis.call('TYPE', KEYS[i]).ok == 'list' and (tq == 'list' or tq == 'none') then\n"
    "    for _, p in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do\n"
    "      local h = held[p]\n"
    "      if h and h > 0 then\n"
    "        held[p] = h - 1\n"
    "      else\n"
    "        redis.call('RPUSH', KEYS[i + 1], p)\n"
    "        redis.call('LREM', KEYS[i], -1, p)\n"
    "        moved = moved + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return moved\n";

const char wh_script_reap[] =
    CHECK_FN
    "if ARGV[7] ~= '1' and redis.call('EXISTS', KEYS[4]) == 1 then return -1 end\n"
    "local e = check(KEYS[2], 'set') or check(KEYS[3], 'zset')\n"
    "if e then return e end\n"
    NOW
    "local recovered, left = 0, 0\n"
    "for _, q in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  local inflight, qk = ARGV[2] .. ARGV[1] .. ':' .. q, ARGV[3] .. q\n"
    "  local tq = redis.call('TYPE', qk).ok\n"
    "  if redis.call('TYPE', inflight).ok ~= 'list' then\n"
    "  elseif tq ~= 'list' and tq ~= 'none' then\n"
    "    left = left + redis.call('LLEN', inflight)\n"
    "  else\n"
    "    while true do\n"
    "      local p = redis.call('LINDEX', inflight, 0)\n"
    "      if not p then break end\n"
    "      local ok, obj = pcall(cjson.decode, p)\n"
    "      local id = (ok and type(obj) == 'table' and type(obj.jid) == 'string') and obj.jid or redis.sha1hex(p)\n"
    "      local rk = ARGV[4] .. id\n"
    "      local n = redis.pcall('INCR', rk)\n"
    "      if type(n) ~= 'number' then n = 1 end\n"
    "      if n == 1 then redis.pcall('EXPIRE', rk, ARGV[5]) end\n"
    "      if n > tonumber(ARGV[6]) then\n"
    "        local d = p\n"
    "        if string.sub(d, 1, 1) == '{' and string.sub(d, -1) == '}' and not string.find(d, '\"error_message\"', 1, true) then\n"
    "          d = string.sub(d, 1, -2) .. ',\"error_message\":\"recovered from dead processes more than ' ..\n"
    "              ARGV[6] .. ' times within ' .. ARGV[5] .. ' s\",\"error_class\":\"WorkerHost::PoisonPill\",\"failed_at\":' ..\n"
    "              string.format('%.6f', now) .. '}'\n"
    "        end\n"
    "        redis.call('ZADD', KEYS[3], now, d)\n"
    "      else\n"
    "        redis.call('RPUSH', qk, p)\n"
    "      end\n"
    "      redis.call('LPOP', inflight)\n"
    "      recovered = recovered + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if left == 0 then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('SREM', KEYS[1], ARGV[1])\n"
    "end\n"
    "return {recovered, left}\n";

void wh_script_migrate_args(const char *ns, wh_script_args *out) {
    wh_buf b[WH_MIGRATE_NARGS];
    for (int i = 0; i < WH_MIGRATE_NARGS; i++) wh_buf_init(&b[i]);
    wh_buf_puts(&b[0], "2");
    wh_buf_printf(&b[1], "%s%s", ns, WH_KEY_VERSION);
    wh_buf_printf(&b[2], "%s%s", ns, WH_KEY_REGISTRY);
    wh_buf_puts(&b[3], WH_KEY_VERSION_VALUE);
    wh_buf_puts(&b[4], ns);
    wh_buf_printf(&b[5], "%s%s", ns, WH_KEY_INFLIGHT_PREFIX);
    wh_buf_puts(&b[6], WH_KEY_V1_QUEUES_OF_SUFFIX);
    wh_buf_printf(&b[7], "%s%s", ns, WH_KEY_QUEUES_OF_PREFIX);
    for (int i = 0; i < WH_MIGRATE_NARGS; i++) {
        out->l[i] = b[i].len;
        out->v[i] = wh_buf_steal(&b[i]);
    }
}

void wh_script_args_free(wh_script_args *a) {
    for (int i = 0; i < WH_MIGRATE_NARGS; i++) wh_free(a->v[i]);
}
