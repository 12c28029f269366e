-- Benchmark only (scripts/bench redis): the no-op job, the same shape as the
-- Sidekiq peer's NoopWorker#perform(i) (one positional integer, empty body).
local wh = require "workerhost"

return wh.worker {
  name = "NoopWorker",
  queue = "default",
  args = { "integer" },
  perform = function(args, job) end,
}
