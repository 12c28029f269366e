-- Benchmark only (scripts/bench redis): the latency probe. Its first act in
-- perform is to write "<seq>\n" to the FIFO named by $WH_BENCH_FIFO, which
-- scripts/bench_redis.py reads; the reader takes the time when the line
-- arrives. So a figure = (line read) - (push sent), both on the reader's
-- clock: it includes the push round trip, the host's pick-up, the C check,
-- the call into Lua and one pipe write + wake-up (tens of microseconds).
local wh = require "workerhost"

local FIFO = os.getenv("WH_BENCH_FIFO")

return wh.worker {
  name = "LatencyWorker",
  queue = "default",
  retry = false,
  args = { "integer" },
  perform = function(args, job)
    if not FIFO then error("WH_BENCH_FIFO is not set") end
    local f = assert(io.open(FIFO, "w"))
    f:write(args[1], "\n")
    f:close()
  end,
}
