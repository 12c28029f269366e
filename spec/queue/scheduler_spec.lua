-- BackgroundQueue: the scheduler moves due jobs from `schedule` and `retry`
-- to their queues with a fresh enqueued_at, numbers kept exactly, each job
-- once even with several hosts. Each test starts its own redis-server.
local S = require "spec.queue.support"

local RETRIED = '"error_message":"boom","error_class":"WorkerHost::LuaError","failed_at":1700000001.5'

describe("BackgroundQueue scheduler", function()
  local r
  before_each(function() r = S.redis_start() end)
  after_each(function() S.cleanup() end)

  it("runs a scheduled job once, on time, with a fresh enqueued_at", function()
    local app = S.app(r)
    local h = S.host_start(app)
    h:wait_ready()
    local jid = S.jid()
    local due = S.now() + 1
    r:zadd("schedule", { { due, S.job({ jid = jid, enqueued_at = false }) } })
    assert.are.equal(1, S.wait_runs(app, 1, 3))
    local ran_by = S.now()
    assert.truthy(ran_by - due < 1.5, "ran " .. (ran_by - due) .. " s after its time")
    S.sleep(0.3)
    local list, count = S.runs(app)
    assert.are.equal(1, count[jid])
    assert.are.equal(1, #list)
    local late = list[1].enqueued_at - due
    assert.truthy(late >= -0.01 and late < 0.5, "moved " .. late .. " s after its time")
    assert.are.equal(0, r:num("ZCARD", "schedule"))
    assert.are.equal(0, r:num("LLEN", "queue:default"))
  end)

  it("moves due schedule and retry members to their own queues, numbers kept, enqueued_at fresh", function()
    -- this host does not fetch `parked`, so the moved payloads stay there to be read
    local app = S.app(r, { queues = "[default]" })
    local h = S.host_start(app)
    h:wait_ready()
    local sj, rj = S.jid(), S.jid()
    local extra = '"big":9223372036854775807,"f":1.10,"e":1E+2,"z":-0.0'
    local now = S.now()
    local sched = S.job({ jid = sj, queue = "parked", enqueued_at = false, extra = extra })
    local retry = S.job({ jid = rj, queue = "parked", extra = extra .. "," .. RETRIED .. ',"retry_count":0' })
    r:zadd("schedule", { { now - 1, sched } })
    r:zadd("retry", { { now - 2, retry } })
    assert.truthy(S.wait_for(function() return r:num("LLEN", "queue:parked") == 2 end, 2))
    assert.are.equal(0, r:num("ZCARD", "schedule"))
    assert.are.equal(0, r:num("ZCARD", "retry"))
    assert.are.equal("1", r:call("SISMEMBER", "queues", "parked"))
    local moved = {}
    for _, p in ipairs(r:lines("LRANGE", "queue:parked", "0", "-1")) do
      local j = S.decode(p)
      moved[j.jid] = p
      assert.truthy(p:find(extra, 1, true), "numbers kept:\n" .. p)
      assert.truthy(p:find('"created_at":1700000000.25', 1, true))
      local enq = assert(tonumber(p:match('"enqueued_at":(%d+%.%d+)')), "enqueued_at is a float: " .. p)
      assert.truthy(enq >= now - 0.05 and enq < now + 2, "fresh enqueued_at " .. enq)
      assert.are.equal(1, select(2, p:gsub('"enqueued_at":', '')), "one enqueued_at")
    end
    assert.truthy(moved[sj] and moved[rj])
    assert.truthy(moved[rj]:find('"retry_count":0', 1, true))
    assert.truthy(moved[rj]:find('"error_message":"boom"', 1, true))
  end)

  it("a due retry runs again in its worker", function()
    local app = S.app(r)
    local h = S.host_start(app)
    h:wait_ready()
    local jid = S.jid()
    r:zadd("retry", { { S.now() - 1, S.job({ jid = jid, extra = RETRIED .. ',"retry_count":3' }) } })
    assert.are.equal(1, S.wait_runs(app, 1, 3))
    local run = S.runs(app)[1]
    assert.are.equal(jid, run.jid)
    assert.are.equal("3", run.retry_count)
    assert.are.equal(0, r:num("ZCARD", "retry"))
  end)

  it("two hosts move each due job exactly once", function()
    local app = S.app(r, { concurrency = 2 })
    local h1 = S.host_start(app, "h1")
    local h2 = S.host_start(app, "h2")
    h1:wait_ready()
    h2:wait_ready()
    local due = S.now() + 0.7
    local lines, jids = {}, {}
    for i = 1, 150 do
      local jid = S.jid()
      jids[#jids + 1] = jid
      if i % 2 == 0 then
        lines[#lines + 1] = ("ZADD schedule %.6f %s"):format(due, S.sq(S.job({ jid = jid, enqueued_at = false })))
      else
        lines[#lines + 1] = ("ZADD retry %.6f %s"):format(due,
          S.sq(S.job({ jid = jid, extra = RETRIED .. ',"retry_count":0' })))
      end
    end
    r:pipe(lines)
    assert.are.equal(150, S.wait_runs(app, 150, 8))
    S.sleep(0.5)
    local _, count, n = S.runs(app)
    assert.are.equal(150, n)
    for _, jid in ipairs(jids) do assert.are.equal(1, count[jid], "runs of " .. jid) end
    assert.are.equal(0, r:num("ZCARD", "schedule"))
    assert.are.equal(0, r:num("ZCARD", "retry"))
    assert.are.equal(0, r:num("LLEN", "queue:default"))
    assert.are.equal(150, r:num("GET", "stat:processed"))
    assert.truthy(h1:alive() and h2:alive())
  end)
end)
