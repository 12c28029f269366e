-- BackgroundQueue under faults: the host SIGKILLed under load and restarted,
-- a graceful stop past workers.shutdown_timeout, half-open connections
-- (redis-server stopped with SIGSTOP; a link that loses a reply), Redis
-- restarted, down at start, down while stopping, and SIGKILLed under load.
-- Each test starts its own redis-server.
local S = require "spec.queue.support"

local function count(text, needle)
  local n, i = 0, 1
  while true do
    local a, b = text:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

describe("BackgroundQueue faults", function()
  local r
  after_each(function() S.cleanup() end)

  it("loses no job when the host is SIGKILLed three times under a stream of jobs", function()
    r = S.redis_start()
    local app = S.app(r, { workers = { ["x.lua"] = { name = "X", spin = 0.3 } } })
    local pushed = {}
    local function push(n)
      local p, jids = S.jobs(n)
      r:push("default", p)
      for _, j in ipairs(jids) do pushed[#pushed + 1] = j end
    end
    push(10)
    for round = 1, 3 do
      local h = S.host_start(app, "h" .. round)
      h:wait_ready()
      S.sleep(0.35)
      push(4)
      S.sleep(0.35)
      assert.truthy(h:alive(), "host " .. round .. " still running before the kill")
      h:kill9()
    end
    local final = S.host_start(app, "final")
    local id = final:wait_ready()
    local ok = S.wait_for(function()
      local _, c = S.runs(app)
      return S.distinct(c) == #pushed
    end, 15, 0.1)
    local _, c, n = S.runs(app)
    assert.truthy(ok, ("%d of %d jobs ran; final log:\n%s"):format(S.distinct(c), #pushed, final:events()))
    local set = {}
    for _, j in ipairs(pushed) do set[j] = true end
    for j in pairs(c) do assert.truthy(set[j], "ran a job never pushed: " .. j) end
    assert.truthy(n >= #pushed)
    assert.truthy(final:log_has("recovered"), "the final host recovered the jobs of the killed ones")
    -- everything recorded, nothing left anywhere
    assert.truthy(S.wait_for(function() return S.inflight_total(r) == 0 end, 3))
    assert.are.equal(0, r:num("LLEN", "queue:default"))
    assert.are.equal(0, r:num("ZCARD", "dead"))
    assert.are.same({ id }, r:lines("SMEMBERS", "wh:registry"))
  end)

  it("puts jobs still running past shutdown_timeout back at the front of their queue, in order", function()
    r = S.redis_start()
    local app = S.app(r, {
      concurrency = 2,
      shutdown_timeout = 1,
      workers = { ["x.lua"] = { name = "X", spin = 3, record = "start" } },
    })
    -- 20 jobs: 2 run, a few wait prefetched in this host (slow jobs: the
    -- least prefetch, 2 per thread), the rest stay in Redis
    local payloads = S.jobs(20)
    r:push("default", payloads)
    local h = S.host_start(app)
    local id = h:wait_ready()
    assert.are.equal(2, S.wait_runs(app, 2, 5))
    S.sleep(0.2)
    local held = 20 - r:num("LLEN", "queue:default")
    assert.truthy(held >= 2 and held <= 4, "2 running and up to 2 prefetched; held " .. held)
    local t0 = S.now()
    h:signal("TERM")
    assert.are.equal(0, h:wait_exit(10))
    local took = S.now() - t0
    assert.truthy(took < 3.5, "stopped in " .. took .. " s")
    local expected = {}
    for i = #payloads, 1, -1 do expected[#expected + 1] = payloads[i] end
    assert.are.same(expected, r:lines("LRANGE", "queue:default", "0", "-1"))
    assert.are.equal(payloads[1], r:call("LINDEX", "queue:default", "-1"), "the oldest is popped first")
    assert.are.equal(0, S.inflight_total(r))
    assert.are.equal(0, r:num("ZCARD", "retry"))
    assert.are.equal(0, r:num("ZCARD", "dead"))
    assert.are.equal("0", r:call("SISMEMBER", "processes", id))
    assert.are.equal("0", r:call("SISMEMBER", "wh:registry", id))
    assert.truthy(h:log_has(("put %d unfinished jobs back"):format(held)), h:events())
  end)

  it("puts jobs back on a graceful stop even when its blocking connections close late (a proxy in between)", function()
    -- An idle host (its last fetch came back short) has BLMOVE armed on each
    -- queue while prefetched jobs still wait. Stop closes those connections
    -- and then puts the jobs back; if Redis has not yet seen the close, the
    -- still-blocked BLMOVE takes a job straight back into the in-flight list
    -- of a process that is leaving the registry, where nothing recovers it.
    if not S.have("ruby") then return pending("needs ruby for the proxy") end
    r = S.redis_start()
    local px = S.proxy_start(r, { linger = 0.3 })
    local app = S.app(r, {
      uri = px.uri(),
      concurrency = 2,
      shutdown_timeout = 0,
      workers = { ["x.lua"] = { name = "X", spin = 3, record = "start" } },
    })
    -- 3 jobs: the first fetch asks for 4 (2 per thread), gets 3: 2 run, 1 waits
    local payloads = S.jobs(3)
    r:push("default", payloads)
    local h = S.host_start(app)
    local id = h:wait_ready()
    assert.are.equal(2, S.wait_runs(app, 2, 5))
    assert.truthy(S.wait_for(function()
      return r:call("CLIENT", "LIST"):find("cmd=blmove", 1, true)
    end, 5), "precondition: the host blocks in BLMOVE (its fetch came back short)")
    h:signal("TERM")
    assert.are.equal(0, h:wait_exit(10))
    S.sleep(0.5) -- the proxy's late closes are done
    local expected = {}
    for i = #payloads, 1, -1 do expected[#expected + 1] = payloads[i] end
    assert.are.same(expected, r:lines("LRANGE", "queue:default", "0", "-1"),
      ("all 3 back on queue:default in order; %d left in wh:inflight:%s:default (the host has left wh:registry: "
        .. "%s); log:\n%s"):format(r:num("LLEN", "wh:inflight:" .. id .. ":default"), id,
        r:call("SISMEMBER", "wh:registry", id) == "0" and "yes" or "no", h:events(10)))
    assert.are.equal(0, S.inflight_total(r))
  end)

  it("drops a half-open connection (Redis stopped with SIGSTOP) and runs jobs after SIGCONT", function()
    r = S.redis_start()
    local app = S.app(r)
    local h = S.host_start(app)
    h:wait_ready()
    S.sleep(0.3)
    r:signal("STOP")
    S.sleep(11) -- past the command deadline (10 s) and the blocked fetch's (2 + 5 s)
    r:signal("CONT")
    assert.truthy(h:log_has("dropping the connection"), h:events())
    local p, jids = S.jobs(1)
    r:push("default", p)
    local ran = S.wait_runs(app, 1, 10)
    assert.are.equal(1, ran, "the job pushed after SIGCONT ran; log:\n" .. h:events())
    assert.are.equal(jids[1], S.runs(app)[1].jid)
    assert.truthy(h:alive())
  end)

  it("runs a job whose blocking fetch was answered on a connection that went half-open", function()
    -- The link dies after BLMOVE's reply left Redis: Redis moved the job
    -- into this host's in-flight list, the host never saw it. The watchdog
    -- drops the silent connection (7 s); the job must still run.
    if not S.have("ruby") then return pending("needs ruby for the proxy") end
    r = S.redis_start()
    local px = S.proxy_start(r)
    local app = S.app(r, { uri = px.uri() })
    local h = S.host_start(app)
    local id = h:wait_ready()
    assert.truthy(S.wait_for(function()
      return r:call("CLIENT", "LIST"):find("cmd=blmove", 1, true)
    end, 5), "the host blocks in BLMOVE while idle")
    px:freeze("BLMOVE")
    local p, jids = S.jobs(1)
    r:push("default", p) -- straight to Redis: the blocked BLMOVE takes it; its reply is lost
    local inflight = "wh:inflight:" .. id .. ":default"
    assert.are.equal(1, r:num("LLEN", inflight), "precondition: the job went into the in-flight list")
    local ran = S.wait_runs(app, 1, 10)
    assert.are.equal(1, ran, ("the job did not run: %d in queue:default, %d in %s; log:\n%s"):format(
      r:num("LLEN", "queue:default"), r:num("LLEN", inflight), inflight, h:events(10)))
    assert.are.equal(jids[1], S.runs(app)[1].jid)
    assert.truthy(S.wait_for(function() return r:num("LLEN", inflight) == 0 end, 3))
  end)

  it("reconnects by itself when Redis restarts, and goes on running jobs", function()
    r = S.redis_start()
    local app = S.app(r)
    local h = S.host_start(app)
    local id = h:wait_ready()
    local p1 = S.jobs(1)
    r:push("default", p1)
    assert.are.equal(1, S.wait_runs(app, 1, 5))
    r:stop("TERM")
    S.sleep(1)
    assert.truthy(h:alive())
    assert.truthy(r:launch("--appendonly yes"), "redis-server restarted on port " .. r.port)
    assert.truthy(S.wait_for(function() return count(h:logtext(), "redis: connected to") >= 2 end, 10),
      h:events())
    -- registered again
    assert.truthy(S.wait_for(function() return r:call("SISMEMBER", "processes", id) == "1" end, 3))
    assert.are.equal("1", r:call("SISMEMBER", "wh:registry", id))
    local p2, jids = S.jobs(1)
    r:push("default", p2)
    assert.are.equal(2, S.wait_runs(app, 2, 5), h:events())
    assert.are.equal(jids[1], S.runs(app)[2].jid)
    assert.truthy(h:log_has("lost the connection"))
    assert.truthy(h:alive())
    h:signal("TERM")
    assert.are.equal(0, h:wait_exit(10))
  end)

  it("starts with Redis down, says so, and connects soon after Redis comes up", function()
    r = S.redis_start()
    local app = S.app(r)
    r:stop("TERM") -- the port is known, and nothing listens there now
    local h = S.host_start(app)
    S.sleep(1.5)
    assert.truthy(h:alive(), "no crash while Redis is down")
    local said = h:log_has("cannot connect")
    assert.truthy(r:launch(), "redis-server started on port " .. r.port)
    local t0 = S.now()
    local ok = S.wait_for(function() return h:log_has("redis: connected to") end, 10, 0.05)
    local took = S.now() - t0
    assert.truthy(ok, "never connected; log:\n" .. h:events())
    local p, jids = S.jobs(1)
    r:push("default", p)
    assert.are.equal(1, S.wait_runs(app, 1, 5))
    assert.are.equal(jids[1], S.runs(app)[1].jid)
    -- backoff from 0.1 s, doubling: after 1.5 s down the next try is at most ~1.6 s away
    assert.truthy(said, "logs that Redis is unreachable; log:\n" .. h:events())
    assert.truthy(took < 2.5, ("connected %.1f s after Redis came up; log:\n%s"):format(took, h:events()))
  end)

  it("stops within its deadline on SIGTERM while Redis is unreachable", function()
    r = S.redis_start()
    local app = S.app(r)
    local h = S.host_start(app)
    h:wait_ready()
    r:stop("TERM")
    S.sleep(0.3)
    local t0 = S.now()
    h:signal("TERM")
    -- "redis unreachable while stopping": gives up after 10 s, leaving its
    -- in-flight jobs (none here) to another host's reaper
    local status = h:wait_exit(11.5)
    local took = S.now() - t0
    assert.are.equal(0, status, ("still running %.1f s after SIGTERM; log:\n%s"):format(took, h:events()))
  end)

  it("stops at once on SIGTERM when Redis was never reachable and nothing was fetched", function()
    r = S.redis_start()
    local app = S.app(r)
    r:stop("TERM") -- the port is known, and nothing listens there now
    local h = S.host_start(app)
    assert.truthy(S.wait_for(function() return h:log_has("cannot connect") end, 5, 0.05), "log:\n" .. h:events())
    local t0 = S.now()
    h:signal("TERM")
    local status = h:wait_exit(5)
    local took = S.now() - t0
    assert.are.equal(0, status, ("still running %.1f s after SIGTERM; log:\n%s"):format(took, h:events()))
    assert.truthy(took < 2, ("stopped %.1f s after SIGTERM; log:\n%s"):format(took, h:events()))
    assert.falsy(h:log_has("outcomes not recorded"), "no warning about outcomes; log:\n" .. h:events())
    assert.truthy(h:log_has("nothing was held"), "says why it stops at once; log:\n" .. h:events())
  end)

  it("loses nothing acknowledged when Redis (appendfsync always) is SIGKILLed under load", function()
    r = S.redis_start({ args = "--appendonly yes --appendfsync always" })
    local app = S.app(r, { workers = { ["x.lua"] = { name = "X", spin = 0.01 } } })
    local payloads, jids = S.jobs(300)
    r:push("default", payloads)
    local h = S.host_start(app)
    h:wait_ready()
    S.wait_runs(app, 60, 10)
    r:stop("KILL")
    S.sleep(0.5)
    assert.truthy(r:launch(), "redis-server restarted")
    local ok = S.wait_for(function()
      local _, c = S.runs(app)
      return S.distinct(c) == #jids
    end, 14, 0.1) -- room for a reset connection noticed late (see the Redis-down test)
    local _, c = S.runs(app)
    assert.truthy(ok, ("%d of %d jobs ran; %d in queue, %d in flight; log:\n%s"):format(S.distinct(c), #jids,
      r:num("LLEN", "queue:default"), S.inflight_total(r), h:events()))
    for _, j in ipairs(jids) do assert.truthy(c[j], "ran " .. j) end
    assert.truthy(S.wait_for(function() return S.inflight_total(r) == 0 end, 5), "in-flight lists drained")
    assert.are.equal(0, r:num("LLEN", "queue:default"))
    -- every outcome recorded (durably: appendfsync always), none lost
    assert.truthy(S.wait_for(function() return r:num("GET", "stat:processed") >= 300 end, 3),
      "stat:processed " .. r:num("GET", "stat:processed"))
    assert.truthy(h:alive())
    h:signal("TERM")
    assert.are.equal(0, h:wait_exit(10))
  end)
end)
