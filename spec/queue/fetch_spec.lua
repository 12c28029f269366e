-- BackgroundQueue: fetching and running jobs pushed in Sidekiq's layout,
-- strict queue order, counters, and the process registry while running and
-- after a graceful stop. Each test starts its own redis-server.
local S = require "spec.queue.support"

describe("BackgroundQueue fetch", function()
  local r
  before_each(function() r = S.redis_start() end)
  after_each(function() S.cleanup() end)

  it("runs jobs pushed in Sidekiq's shape exactly once, counts them, and registers the process", function()
    local app = S.app(r, { workers = { ["x.lua"] = { name = "X", fail_negative = true } } })
    local h = S.host_start(app)
    local id = h:wait_ready()

    -- the heartbeat, as Sidekiq's ProcessSet reads it
    local info = S.decode(r:call("HGET", id, "info"))
    assert.are.equal(id, info.identity)
    assert.are.equal(h.pid, info.pid)
    assert.are.equal(2, info.concurrency)
    assert.are.same({ "critical", "default" }, info.queues)
    assert.is_string(info.hostname)
    assert.are.equal(id:match("^(.*):%d+:%x+$"), info.hostname)
    assert.truthy(id:match(":" .. h.pid .. ":%x%x%x%x%x%x%x%x%x%x%x%x$"), "identity is host:pid:12 hex")
    assert.is_number(info.started_at)
    assert.truthy(math.abs(info.started_at - S.now()) < 30)
    assert.are.equal("false", r:call("HGET", id, "quiet"))
    assert.truthy(r:call("HGET", id, "busy"):match("^%d+$"), "busy is an integer")
    assert.truthy(r:call("HGET", id, "beat"):match("^%d+%.%d+$"), "beat is a float")
    local ttl = r:num("TTL", id)
    assert.truthy(ttl > 0 and ttl <= 60, "heartbeat TTL " .. ttl)
    assert.are.equal("1", r:call("SISMEMBER", "wh:registry", id))

    local good, good_jids = S.jobs(20)
    local bad, bad_jids = S.jobs(3, { args = '[{"n":-1}]' })
    local all = {}
    for _, p in ipairs(good) do all[#all + 1] = p end
    for _, p in ipairs(bad) do all[#all + 1] = p end
    r:push("default", all)

    assert.are.equal(20, S.wait_runs(app, 20, 10))
    assert.truthy(S.wait_for(function() return r:num("GET", "stat:processed") >= 23 end, 5))
    S.sleep(0.3) -- a job run twice would show up by now
    local list, count, n = S.runs(app)
    assert.are.equal(20, n, "only the jobs that did not raise record a run")
    for _, jid in ipairs(good_jids) do assert.are.equal(1, count[jid], "runs of " .. jid) end
    for _, jid in ipairs(bad_jids) do assert.is_nil(count[jid]) end
    for _, run in ipairs(list) do assert.are.equal("default", run.queue) end

    assert.are.equal(23, r:num("GET", "stat:processed"))
    assert.are.equal(3, r:num("GET", "stat:failed"))
    assert.are.equal(23, r:num("GET", "stat:processed:" .. S.utc_day()))
    assert.are.equal(3, r:num("GET", "stat:failed:" .. S.utc_day()))
    assert.truthy(r:num("TTL", "stat:processed:" .. S.utc_day()) > 150000000, "daily keys expire after 5 years")
    assert.are.equal(-1, r:num("TTL", "stat:processed"))
    assert.are.equal(3, r:num("ZCARD", "retry"))
    assert.are.equal(0, r:num("LLEN", "queue:default"))
    assert.are.equal(0, r:num("LLEN", "wh:inflight:" .. id .. ":default"))
    assert.are.equal(0, r:num("LLEN", "wh:inflight:" .. id .. ":critical"))

    -- graceful stop: the process leaves the registry
    h:signal("TERM")
    assert.are.equal(0, h:wait_exit(10))
    assert.are.equal("0", r:call("SISMEMBER", "processes", id))
    assert.are.equal(0, r:num("EXISTS", id))
    assert.are.equal("0", r:call("SISMEMBER", "wh:registry", id))
    assert.are.equal(0, r:num("EXISTS", id .. ":workers"))
    assert.are.equal(0, r:num("EXISTS", id .. ":work"))
    assert.are.equal(0, S.inflight_total(r))
    assert.are.equal(23, r:num("GET", "stat:processed"))
  end)

  it("serves queues in strict order: all of critical first, each queue oldest first", function()
    local app = S.app(r, {
      concurrency = 1,
      workers = {
        ["x.lua"] = { name = "X" },
        ["c.lua"] = { name = "C", queue = "critical" },
      },
    })
    local dp, djids = S.jobs(12)
    local cp, cjids = S.jobs(12, { class = "C", queue = "critical" })
    r:push("default", dp) -- pushed earlier, still served after critical
    r:push("critical", cp)
    local h = S.host_start(app)
    h:wait_ready()
    assert.are.equal(24, S.wait_runs(app, 24, 10))
    local list = S.runs(app)
    local expected = {}
    for _, j in ipairs(cjids) do expected[#expected + 1] = j end
    for _, j in ipairs(djids) do expected[#expected + 1] = j end
    local got = {}
    for i, run in ipairs(list) do
      got[i] = run.jid
      assert.are.equal(i <= 12 and "critical" or "default", run.queue, "run " .. i)
    end
    assert.are.same(expected, got)
  end)

  it("starts a job pushed to an idle host at once", function()
    local app = S.app(r)
    local h = S.host_start(app)
    h:wait_ready()
    S.sleep(2.2) -- idle past one BLMOVE timeout (2 s)
    local p, jids = S.jobs(1)
    local t0 = S.now()
    r:push("default", p)
    assert.truthy(S.wait_for(function() return S.run_count(app) == 1 end, 3, 0.01))
    local took = S.now() - t0
    assert.truthy(took < 1.0, "picked up in " .. took .. " s")
    assert.are.equal(jids[1], S.runs(app)[1].jid)
  end)
end)
