-- BackgroundQueue under attack (the faults issue): queue names that could
-- collide with our keys, keys of the wrong type, a host reaped while it was
-- only paused, Redis refusing writes at start, Redis closing connections
-- under load. Each test starts its own redis-server.
local S = require "spec.queue.support"

-- The number of log lines of a host that contain text.
local function lines_with(h, text)
  local n = 0
  for line in h:logtext():gmatch("[^\n]+") do
    if line:find(text, 1, true) then n = n + 1 end
  end
  return n
end

local function jid_set(jids)
  local t = {}
  for _, j in ipairs(jids) do t[j] = true end
  return t
end

-- How many of jids have run (by the runs file).
local function ran_of(app, jids)
  local _, c = S.runs(app)
  local n = 0
  for _, j in ipairs(jids) do
    if c[j] then n = n + 1 end
  end
  return n
end

describe("BackgroundQueue under attack", function()
  local r
  after_each(function() S.cleanup() end)

  it("runs every job of a queue named 'queues' (its in-flight list cannot collide with our keys)", function()
    r = S.redis_start()
    local app = S.app(r, {
      queues = "[queues]",
      workers = { ["x.lua"] = { name = "X", queue = "queues" } },
    })
    local payloads, jids = S.jobs(100, { queue = "queues" })
    r:push("queues", payloads)
    local h = S.host_start(app)
    h:wait_ready()
    assert.truthy(S.wait_for(function() return ran_of(app, jids) == 100 end, 15, 0.1),
      ("%d of 100 jobs ran; log:\n%s"):format(ran_of(app, jids), h:events()))
    assert.truthy(S.wait_for(function() return S.inflight_total(r) == 0 end, 5))
    assert.are.equal(0, r:num("LLEN", "queue:queues"))
    assert.are.equal(0, r:num("ZCARD", "dead"))
    assert.are.equal("2", r:call("GET", "wh:version"))
  end)

  it("waits while a host of key layout 1 runs, then moves the keys to layout 2 and recovers that host's jobs",
    function()
      r = S.redis_start()
      local app = S.app(r)
      -- what a layout-1 host left: its set of queues at the old name, a job in flight
      local old = "old-host:7:aaaaaaaaaaaa"
      local jid = S.jid()
      r:call("SET", "wh:version", "1")
      r:call("SADD", "wh:registry", old)
      r:call("SADD", "wh:inflight:" .. old .. ":queues", "default")
      r:call("LPUSH", "wh:inflight:" .. old .. ":default", S.job({ jid = jid }))
      r:call("HSET", old, "beat", "1") -- its heartbeat: alive
      local h = S.host_start(app)
      assert.truthy(S.wait_for(function() return h:log_has("in use by a running host") end, 5),
        "the host says why it waits; log:\n" .. h:events())
      assert.are.equal("1", r:call("GET", "wh:version"))
      assert.are.equal(0, S.run_count(app))
      r:call("DEL", old) -- its heartbeat expired
      assert.truthy(S.wait_for(function() return S.run_count(app) == 1 end, 15, 0.1),
        "the old host's job ran; log:\n" .. h:events())
      assert.are.equal("2", r:call("GET", "wh:version"))
      assert.are.equal(0, r:num("EXISTS", "wh:inflight:" .. old .. ":queues"))
      assert.truthy(h:log_has("moved workerhost's keys from layout 1 to layout 2"))
    end)

  it("leaves a due job where it is, or dead, when its queue key holds another type (never loses it)", function()
    r = S.redis_start()
    local app = S.app(r)
    -- another client made queue:broken a string: pushing to it fails
    r:call("SET", "queue:broken", "not a list")
    local jid = S.jid()
    local p = S.job({ jid = jid, queue = "broken" })
    r:zadd("schedule", { { S.now() - 1, p } })
    local h = S.host_start(app)
    h:wait_ready()
    -- the scheduler looks every 50 ms; give it many passes
    S.sleep(1)
    local in_schedule = r:zfind("schedule", jid) ~= nil
    local in_dead = r:zfind("dead", jid) ~= nil
    assert.truthy(in_schedule or in_dead, "the job is kept in schedule or dead; log:\n" .. h:events())
    assert.truthy(h:alive())
  end)

  it("loses no job of a host that was taken for dead while paused and later killed", function()
    r = S.redis_start()
    local app = S.app(r, {
      concurrency = 2,
      workers = { ["x.lua"] = { name = "X", spin = 1.5, record = "start" } },
    })
    local a = S.host_start(app, "a")
    local ida = a:wait_ready()
    local first, first_jids = S.jobs(4)
    r:push("default", first)
    assert.truthy(S.wait_for(function() return ran_of(app, first_jids) >= 2 end, 5))
    -- a freezes past its heartbeat: the key expires (here: is deleted) and
    -- another host's reaper takes a's in-flight jobs back
    a:signal("STOP")
    r:call("DEL", ida)
    local b = S.host_start(app, "b")
    b:wait_ready()
    assert.truthy(S.wait_for(function() return b:log_has("recovered") end, 5),
      "b reaps the frozen a; b's log:\n" .. b:events())
    b:signal("TERM")
    assert.are.equal(0, b:wait_exit(15))
    -- a wakes up, finds it was reaped, and must restore what a reaper needs
    a:signal("CONT")
    assert.truthy(S.wait_for(function() return r:call("SISMEMBER", "wh:registry", ida) == "1" end, 10),
      "a registers again; a's log:\n" .. a:events())
    local second, second_jids = S.jobs(8)
    r:push("default", second)
    assert.truthy(S.wait_for(function()
      return r:num("LLEN", "wh:inflight:" .. ida .. ":default") >= 2 and ran_of(app, second_jids) >= 1
    end, 10), "a holds jobs of the second batch; a's log:\n" .. a:events())
    a:kill9()
    local c = S.host_start(app, "c")
    c:wait_ready()
    assert.truthy(S.wait_for(function() return ran_of(app, second_jids) == 8 end, 30, 0.1),
      ("%d of 8 jobs ran after a was killed; c's log:\n%s"):format(ran_of(app, second_jids), c:events()))
    assert.truthy(S.wait_for(function() return S.inflight_total(r) == 0 end, 10))
    assert.are.equal(0, r:num("LLEN", "queue:default"))
  end)

  it("runs nothing while Redis refuses writes at start, backs off, and runs every job once writes are allowed",
    function()
      r = S.redis_start()
      local app = S.app(r)
      local payloads, jids = S.jobs(20)
      r:push("default", payloads)
      -- over maxmemory with noeviction: every write that may grow memory is refused (OOM)
      assert.are.equal("OK", r:call("CONFIG", "SET", "maxmemory", "1"))
      local h = S.host_start(app)
      assert.truthy(S.wait_for(function() return h:log_has("redis: connected to") end, 5), h:tail())
      S.sleep(3)
      assert.are.equal(0, S.run_count(app), "no job runs before the host is registered; log:\n" .. h:events())
      assert.are.equal(20, r:num("LLEN", "queue:default"))
      assert.are.equal(0, r:num("SCARD", "wh:registry"))
      -- the refusal is logged, but not once per try
      local refused = lines_with(h, "OOM")
      assert.truthy(refused >= 1, "the refusal is logged; log:\n" .. h:events())
      assert.truthy(refused <= 6, refused .. " lines about OOM in 3 s; log:\n" .. h:events())
      assert.are.equal("OK", r:call("CONFIG", "SET", "maxmemory", "0"))
      assert.truthy(S.wait_for(function() return ran_of(app, jids) == 20 end, 15, 0.1),
        ("%d of 20 ran once writes were allowed; log:\n%s"):format(ran_of(app, jids), h:events()))
      local _, c = S.runs(app)
      for _, j in ipairs(jids) do assert.are.equal(1, c[j], "job " .. j .. " ran once") end
      assert.truthy(S.wait_for(function() return S.inflight_total(r) == 0 end, 5))
    end)

  it("fetches the other queues, and backs off, when a queue key holds another type than a list", function()
    r = S.redis_start()
    local app = S.app(r) -- queues [critical, default]
    r:call("SET", "queue:critical", "not a list") -- another client's mistake
    local payloads, jids = S.jobs(10)
    r:push("default", payloads)
    local h = S.host_start(app)
    h:wait_ready()
    assert.truthy(S.wait_for(function() return ran_of(app, jids) == 10 end, 10, 0.1),
      ("%d of 10 jobs of the sound queue ran; log:\n%s"):format(ran_of(app, jids), h:events()))
    S.sleep(3)
    local n = lines_with(h, "queue:critical")
    assert.truthy(n >= 1 and n <= 3, n .. " lines about queue:critical in about 3 s; log:\n" .. h:events())
    assert.are.equal("not a list", r:call("GET", "queue:critical"))
  end)

  it("backs off and logs once per interval when Redis refuses its scripts (ACL without EVAL)", function()
    r = S.redis_start()
    assert.are.equal("OK", r:call("ACL", "SETUSER", "worker", "on", ">pw", "~*", "&*", "+@all", "-eval", "-evalsha"))
    local app = S.app(r, { uri = ("redis://worker:pw@127.0.0.1:%d/0"):format(r.port) })
    local h = S.host_start(app)
    S.sleep(3)
    assert.truthy(h:alive())
    local n = lines_with(h, "NOPERM")
    assert.truthy(n >= 1 and n <= 3, n .. " lines about NOPERM in 3 s; log:\n" .. h:events())
  end)

  it("takes a refused AUTH as a failed connection: backs off, never says connected", function()
    r = S.redis_start()
    -- the default user needs no password, so a SELECT after the refused AUTH succeeds
    local app = S.app(r, { uri = ("redis://nobody:wrong@127.0.0.1:%d/0"):format(r.port) })
    local h = S.host_start(app)
    S.sleep(3)
    assert.truthy(h:alive())
    assert.are.equal(0, lines_with(h, "redis: connected"), "log:\n" .. h:events())
    local n = lines_with(h, "authentication to")
    assert.truthy(n >= 1 and n <= 3, n .. " lines about the refused login in 3 s; log:\n" .. h:events())
    assert.are.equal(0, r:num("SCARD", "wh:registry"))
  end)

  it("clamps an out-of-range retry_count from another client instead of overflowing or parking the job", function()
    r = S.redis_start()
    local app = S.app(r)
    local big, neg = S.jid(), S.jid()
    -- args.n < 0 makes the worker raise
    r:push("default", {
      S.job({ jid = big, args = '[{"n":-1}]', retry = "3", extra = '"retry_count":2147483647' }),
      S.job({ jid = neg, args = '[{"n":-1}]', retry = "3", extra = '"retry_count":-1000000' }),
    })
    local h = S.host_start(app)
    h:wait_ready()
    assert.truthy(S.wait_for(function()
      return r:zfind("dead", big) ~= nil and r:zfind("retry", neg) ~= nil
    end, 10), "one dead, one retried; log:\n" .. h:events())
    assert.truthy(h:alive())
    local p, score = r:zfind("retry", neg)
    assert.are.equal(0, S.decode(p).retry_count) -- taken as -1 (Sidekiq's "retried by hand"), so counted from 0
    local wait = score - tonumber(r:lines("TIME")[1])
    assert.truthy(wait > 0 and wait < 120, "the retry is due within two minutes, not in 1e24 s: " .. wait)
    assert.are.equal(1000001, S.decode((r:zfind("dead", big))).retry_count) -- clamped, then counted
  end)

  it("moves big due payloads to their queue byte for byte, without building a tree of them", function()
    r = S.redis_start()
    local app = S.app(r) -- serves [critical, default]: what goes to `parked` stays there to be read
    local dir = S.tmpdir()
    local zeros = ("0,"):rep(4 * 1024 * 1024 - 1) .. "0" -- 8 MiB of the costliest shape to parse
    local now = tonumber(r:lines("TIME")[1])
    local payloads = {}
    for i = 1, 4 do
      payloads[i] = S.job({ queue = "parked", args = "[[" .. zeros .. "]]", enqueued_at = false })
      S.H.write(dir .. "/p", payloads[i])
      S.H.sh(("redis-cli -p %d -x ZADD schedule %d < %s"):format(r.port, now - 1, S.H.q(dir .. "/p")))
    end
    local h = S.host_start(app)
    h:wait_ready()
    assert.truthy(S.wait_for(function() return r:num("LLEN", "queue:parked") == 4 end, 20, 0.2),
      "the 4 due jobs moved; log:\n" .. h:events())
    local status = S.H.read("/proc/" .. h.pid .. "/status") or ""
    local hwm = tonumber(status:match("VmHWM:%s+(%d+) kB"))
    assert.truthy(hwm and hwm < 300 * 1024, ("peak RSS %s kB for 32 MiB of due payloads"):format(tostring(hwm)))
    local got = r:call("LINDEX", "queue:parked", "0")
    local enq = got:match(',"enqueued_at":([%d%.]+)}$')
    assert.truthy(enq, "enqueued_at added at the end")
    local original
    for _, pl in ipairs(payloads) do
      if pl:find(got:match('"jid":"%x+"'), 1, true) then original = pl end
    end
    assert.truthy(original, "a payload pushed")
    assert.truthy(got:sub(1, #original - 1) == original:sub(1, -2), "every other byte kept")
  end)

  it("survives a storm of CLIENT KILLs under load (a write to a closed connection is not SIGPIPE)", function()
    r = S.redis_start()
    local app = S.app(r, { workers = { ["x.lua"] = { name = "X", loop = 10 } } })
    local payloads, jids = S.jobs(60000)
    r:push("default", payloads)
    local h = S.host_start(app)
    h:wait_ready()
    -- 20 s of kills of every normal connection but the killer's, 10 ms apart
    S.H.sh(("redis-cli -p %d -r 2000 -i 0.01 CLIENT KILL TYPE normal SKIPME yes >/dev/null 2>&1"):format(r.port))
    assert.truthy(h:alive(), "the host survived the storm; exit status " .. tostring(h:wait_exit(1))
      .. "; log:\n" .. h:events())
    assert.truthy(S.wait_for(function() return ran_of(app, jids) == 60000 end, 90, 0.2),
      ("%d of 60000 jobs ran; log:\n%s"):format(ran_of(app, jids), h:events()))
    assert.truthy(S.wait_for(function() return S.inflight_total(r) == 0 end, 10))
    assert.are.equal(0, r:num("LLEN", "queue:default"))
    assert.are.equal(0, r:num("ZCARD", "dead"))
    local set = jid_set(jids)
    local _, c = S.runs(app)
    for j in pairs(c) do assert.truthy(set[j], "ran a job never pushed: " .. j) end
  end)

  describe("with the host's clock skewed (libfaketime), decides by Redis's clock", function()
    local function faketime_lib()
      for _, p in ipairs({ "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1" }) do
        if S.H.exists(p) then return p end
      end
    end
    local lib = faketime_lib()
    -- a host whose wall clock is `offset` off (its monotonic clock is not)
    local function skewed_host(app, offset)
      local h = S.host_start(app, "skewed", {
        env = ("LD_PRELOAD=%s FAKETIME=%s FAKETIME_DONT_FAKE_MONOTONIC=1"):format(lib, offset) })
      h:wait_ready()
      return h
    end

    it("a host 10 minutes ahead does not run jobs scheduled 5 minutes out", function()
      assert.truthy(lib, "libfaketime is installed (scripts/lib.sh installs the faketime package)")
      r = S.redis_start()
      local app = S.app(r)
      local now = tonumber(r:lines("TIME")[1])
      local later, due = S.jid(), S.jid()
      r:zadd("schedule", { { now + 300, S.job({ jid = later }) }, { now - 1, S.job({ jid = due }) } })
      local h = skewed_host(app, "+10m")
      assert.truthy(S.wait_for(function() return ran_of(app, { due }) == 1 end, 5), h:events())
      S.sleep(1)
      assert.are.equal(0, ran_of(app, { later }), "the job due in 5 minutes did not run")
      assert.truthy(r:zfind("schedule", later))
    end)

    it("a host 10 minutes behind writes retries due in the future", function()
      assert.truthy(lib, "libfaketime is installed")
      r = S.redis_start()
      local app = S.app(r)
      local jid = S.jid()
      r:push("default", { S.job({ jid = jid, args = '[{"n":-1}]', retry = "3" }) })
      local h = skewed_host(app, "-10m")
      assert.truthy(S.wait_for(function() return r:zfind("retry", jid) ~= nil end, 5), h:events())
      local _, score = r:zfind("retry", jid)
      local wait = score - tonumber(r:lines("TIME")[1])
      assert.truthy(wait > 5, "due in the future by Redis's clock: " .. wait)
    end)

    it("a host 200 days ahead does not trim the dead set", function()
      assert.truthy(lib, "libfaketime is installed")
      r = S.redis_start()
      local app = S.app(r)
      local now = tonumber(r:lines("TIME")[1])
      local items = {}
      for i = 1, 50 do items[i] = { now - i, S.job({}) } end
      r:zadd("dead", items)
      local jid = S.jid()
      r:push("default", { S.job({ jid = jid, args = '[{"n":-1}]', retry = "0" }) })
      local h = skewed_host(app, "+200d")
      assert.truthy(S.wait_for(function() return r:zfind("dead", jid) ~= nil end, 5), h:events())
      assert.are.equal(51, r:num("ZCARD", "dead"))
    end)
  end)
end)
