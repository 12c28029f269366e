-- scripts/bench_redis_client.lua -- run by scripts/bench_redis.py (scripts/bench redis).
--   lua5.4 bench_redis_client.lua single|bulk N BATCH URI ROOT
-- Connects with the Lua client (require "workerhost".connect: the C check, then
-- Redis), prints "ready", enqueues N NoopWorker jobs (args {i}) -- one
-- c:enqueue per job (single), or c:enqueue_bulk per BATCH jobs (bulk) -- and
-- prints "done". The caller times the two lines, so start-up and loading the
-- worker scripts are not counted.
local mode, n, batch, uri, root = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5]
assert(mode == "single" or mode == "bulk", "usage: single|bulk N BATCH URI ROOT")
local c = assert(require("workerhost").connect(uri, { root = root }))
io.stdout:write("ready\n")
io.stdout:flush()
if mode == "single" then
  for i = 1, n do
    assert(c:enqueue("NoopWorker", { i }))
  end
else
  local i = 1
  while i <= n do
    local list = {}
    for k = i, math.min(i + batch - 1, n) do list[#list + 1] = { k } end
    assert(c:enqueue_bulk("NoopWorker", list))
    i = i + batch
  end
end
io.stdout:write("done\n")
io.stdout:flush()
c:close()
