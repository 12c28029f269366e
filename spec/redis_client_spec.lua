-- workerhost.connect: the Redis client for plain Lua programs. Enqueue and
-- bulk enqueue with the C check, refusals, options, stats, namespaces,
-- closing, and Redis unreachable or going away. Starts its own redis-server
-- on a free loopback port (a random one, retried when taken); pending when
-- no redis-server is installed.
local cjson = require "cjson"
local H = require "spec.helpers"
local wh = require "workerhost"

local HEX24 = "^" .. ("%x"):rep(24) .. "$"

local function have(cmd)
  local _, status = H.sh("command -v " .. cmd .. " >/dev/null")
  return status == 0
end

local function sleep(s) os.execute("sleep " .. s) end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local st = f:read("a")
  f:close()
  return not st:match("^%d+ %b() Z")
end

-- A redis-server of our own: { port, pid, dir }. Extra arguments as a string.
local function start_redis(extra)
  for _ = 1, 10 do
    local port = math.random(20000, 60000)
    local dir = H.tmpdir()
    os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s "
      .. "--daemonize no --logfile %s %s </dev/null >/dev/null 2>&1 & echo $! > %s"):format(
      port, H.q(dir), H.q(dir .. "/redis.log"), extra or "", H.q(dir .. "/pid")))
    local pid = tonumber((H.read(dir .. "/pid") or ""):match("%d+"))
    for _ = 1, 100 do
      -- our own log says it is ready: the port is ours, not another server's
      if (H.read(dir .. "/redis.log") or ""):find("Ready to accept connections", 1, true) then
        return { port = port, pid = pid, dir = dir }
      end
      if not pid or not alive(pid) then break end
      sleep(0.05)
    end
    if pid and alive(pid) then os.execute("kill " .. pid) end
    H.rmdir(dir)
  end
  error("could not start redis-server")
end

local function stop_redis(r)
  if not r or r.stopped then return end
  r.stopped = true
  if r.pid and alive(r.pid) then
    os.execute("kill " .. r.pid)
    for _ = 1, 200 do
      if not alive(r.pid) then break end
      sleep(0.05)
    end
  end
  H.rmdir(r.dir)
end

local WORKERS = {
  ["workers/echo_worker.lua"] = [[
local wh = require "workerhost"
return wh.worker {
  retry = 3,
  args = { name = "string", n = "integer?" },
  perform = function() end,
}
]],
  ["workers/pos_worker.lua"] = [[
local wh = require "workerhost"
return wh.worker {
  queue = "positional",
  args = { "string", "integer" },
  perform = function() end,
}
]],
}

local describe_redis = have("redis-server") and have("redis-cli") and describe or pending

describe_redis("workerhost.connect", function()
  local redis, root, uri

  local function rcli(...)
    local words = { "redis-cli", "-p", tostring(redis.port), "--raw" }
    for _, w in ipairs({ ... }) do words[#words + 1] = H.q(w) end
    local out = H.sh(table.concat(words, " "))
    return out
  end

  local function lines(s)
    local out = {}
    for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end

  local function llen(key) return tonumber(rcli("LLEN", key):match("%d+")) end

  -- A client of the test server's db 0 with no namespace (the app's config
  -- names db 2 and a namespace; see the test of those).
  local function connect(opts)
    opts = opts or {}
    local u = opts.uri or uri
    opts.uri = nil
    opts.root = opts.root or root
    opts.env = opts.env or "test"
    if opts.namespace == nil then opts.namespace = "" end
    return wh.connect(u, opts)
  end

  setup(function()
    redis = start_redis()
    uri = ("redis://127.0.0.1:%d/0"):format(redis.port)
    root = H.app_root(WORKERS)
    -- the app's own config runs ForegroundBlocking: the client talks to Redis anyway
    H.write(root .. "/config/test.yaml",
      "workers:\n  mode: ForegroundBlocking\n  scripts: workers\n"
      .. "queue:\n  uri: redis://127.0.0.1:" .. redis.port .. "/2\n  namespace: appns\n")
  end)

  teardown(function()
    stop_redis(redis)
    if root then H.rmdir(root) end
  end)

  before_each(function() rcli("FLUSHALL") end)

  it("is there", function()
    assert.is_function(wh.connect, "workerhost.connect is missing: app/module.c preloads it (app/connect.h)")
  end)

  it("enqueues a checked job in Sidekiq's shape and returns its jid", function()
    local c = assert(connect())
    local jid = c:enqueue("EchoWorker", { name = "a", n = 1 })
    assert.matches(HEX24, jid)
    assert.are.same({ "default" }, lines(rcli("SMEMBERS", "queues")))
    local items = lines(rcli("LRANGE", "queue:default", "0", "-1"))
    assert.are.equal(1, #items)
    local p = cjson.decode(items[1])
    assert.are.equal("EchoWorker", p.class)
    assert.are.same({ { name = "a", n = 1 } }, p.args)
    assert.are.equal("default", p.queue)
    assert.are.equal(3, p.retry)
    assert.are.equal(jid, p.jid)
    assert.matches('"created_at":%d+%.%d+', items[1])
    assert.matches('"enqueued_at":%d+%.%d+', items[1])
    c:close()
  end)

  it("takes wh.enqueue's options: queue, in, at, retry", function()
    local c = assert(connect())
    c:enqueue("EchoWorker", { name = "q" }, { queue = "critical", retry = false })
    local p = cjson.decode(rcli("LINDEX", "queue:critical", "0"))
    assert.are.equal("critical", p.queue)
    assert.is_false(p.retry)
    local jid = c:enqueue("EchoWorker", { name = "later" }, { ["in"] = 60 })
    c:enqueue("PosWorker", { "x", 2 }, { at = os.time() + 3600 })
    assert.are.equal(2, tonumber(rcli("ZCARD", "schedule"):match("%d+")))
    local member = lines(rcli("ZRANGE", "schedule", "0", "0"))[1]
    assert.truthy(member:find(jid, 1, true))
    assert.falsy(member:find("enqueued_at", 1, true))
    local score = tonumber(rcli("ZSCORE", "schedule", member):match("[%d.]+"))
    assert.is_true(math.abs(score - (os.time() + 60)) < 5)
    assert.has_error(function() c:enqueue("EchoWorker", { name = "x" }, { ["in"] = 1, at = 2 }) end)
    assert.has_error(function() c:enqueue("EchoWorker", { name = "x" }, { bogus = 1 }) end)
    c:close()
  end)

  it("refuses arguments the check refuses, naming the path, and pushes nothing", function()
    local c = assert(connect())
    assert.has_error(function() c:enqueue("EchoWorker", { name = 42 }) end,
      "client:enqueue: EchoWorker: args.name: expected string, got integer")
    assert.has_error(function() c:enqueue("PosWorker", { "x", 1.5 }) end,
      "client:enqueue: PosWorker: args[2]: expected integer, got number 1.5")
    assert.has_error(function() c:enqueue("EchoWorker", { name = "x", n = function() end }) end)
    local err = H.error_of(function() c:enqueue("RubyWorker", {}) end)
    assert.matches('unknown worker class "RubyWorker" %(known: EchoWorker, PosWorker%)', err)
    assert.are.equal(0, llen("queue:default"))
    c:close()
  end)

  it("enqueues in bulk: every item checked first, then one pipeline, jids in order", function()
    local c = assert(connect())
    local list = {}
    for i = 1, 1000 do list[i] = { name = "u" .. i, n = i } end
    local jids = c:enqueue_bulk("EchoWorker", list)
    assert.are.equal(1000, #jids)
    for _, j in ipairs(jids) do assert.matches(HEX24, j) end
    assert.are.equal(1000, llen("queue:default"))
    local first = cjson.decode(rcli("LINDEX", "queue:default", "-1"))
    assert.are.equal(jids[1], first.jid)
    assert.are.same({ { name = "u1", n = 1 } }, first.args)
    assert.are.same({}, c:enqueue_bulk("EchoWorker", {}))

    list[3] = { name = false }
    local err = H.error_of(function() c:enqueue_bulk("EchoWorker", list) end)
    assert.matches("client:enqueue_bulk: EchoWorker: item 3: args.name: expected string, got boolean", err, 1, true)
    assert.are.equal(1000, llen("queue:default"))

    local later = c:enqueue_bulk("PosWorker", { { "a", 1 }, { "b", 2 } }, { ["in"] = 30 })
    assert.are.equal(2, #later)
    assert.are.equal(2, tonumber(rcli("ZCARD", "schedule"):match("%d+")))
    c:close()
  end)

  it("reads the stats", function()
    local c = assert(connect())
    rcli("SET", "stat:processed", "7")
    c:enqueue("EchoWorker", { name = "s" })
    c:enqueue("PosWorker", { "p", 1 })
    c:enqueue("PosWorker", { "p", 2 }, { ["in"] = 60 })
    local s = assert(c:stats())
    assert.are.equal(7, s.processed)
    assert.are.equal(0, s.failed)
    assert.are.equal(2, s.enqueued)
    assert.are.equal(1, s.scheduled)
    assert.are.equal(0, s.in_flight)
    assert.are.equal(2, #s.queues)
    assert.are.equal("default", s.queues[1].name)
    assert.are.equal(1, s.queues[1].size)
    assert.is_true(s.queues[1].latency >= 0 and s.queues[1].latency < 5)
    assert.are.equal("positional", s.queues[2].name)
    assert.are.same({}, s.processes)
    c:close()
  end)

  it("uses the config's queue.uri and queue.namespace when not given; the namespace option wins", function()
    local c = assert(wh.connect(nil, { root = root, env = "test" }))
    assert.matches("^workerhost client %(redis://127%.0%.0%.1:%d+/2%)$", tostring(c))
    c:enqueue("EchoWorker", { name = "cfg" })
    c:close()
    assert.are.equal("1", rcli("-n", "2", "LLEN", "appns:queue:default"):match("%d+"))
    assert.are.equal("default", rcli("-n", "2", "SMEMBERS", "appns:queues"):match("%S+"))
    local c2 = assert(connect { namespace = "other" })
    c2:enqueue("EchoWorker", { name = "ns" })
    c2:close()
    assert.are.equal(1, llen("other:queue:default"))
    assert.are.equal(0, llen("queue:default"))
  end)

  it("closes once, on close(), on <close> and on collection", function()
    local c = assert(connect())
    c:close()
    c:close()
    assert.matches("closed", tostring(c))
    assert.has_error(function() c:enqueue("EchoWorker", { name = "x" }) end, "client:enqueue: the client is closed")
    assert.has_error(function() c:stats() end, "client:stats: the client is closed")
    do
      local c2 <close> = assert(connect())
      c2:enqueue("EchoWorker", { name = "closing" })
    end
    assert.are.equal(1, llen("queue:default"))
    for _ = 1, 20 do assert(connect()) end
    collectgarbage()
    collectgarbage()
  end)

  it("raises on misuse: bad options, a bad URI, a broken app", function()
    assert.has_error(function() wh.connect(uri, { root = root, env = "test", bogus = 1 }) end,
      'workerhost.connect: unknown option "bogus" (known: root, env, config, namespace, timeout)')
    assert.has_error(function() wh.connect(uri, { root = 1 }) end)
    assert.has_error(function() wh.connect(uri, { root = root, env = "test", timeout = 0 }) end)
    local err = H.error_of(wh.connect, "rediss://:pw@h", { root = root, env = "test" })
    assert.matches("TLS is not supported by this build", err, 1, true)
    err = H.error_of(wh.connect, uri, { root = root, env = "nosuchenv" })
    assert.matches("nosuchenv.yaml", err, 1, true)
  end)

  it("returns nil and a message when Redis is unreachable, without the password", function()
    local t0 = os.time()
    local c, msg = wh.connect("redis://:sekrit@127.0.0.1:1/0", { root = root, env = "test" })
    assert.is_nil(c)
    assert.are.equal("cannot connect to redis://:***@127.0.0.1:1/0: Connection refused", msg)
    assert.is_true(os.time() - t0 <= 2)
    -- this server has no password: AUTH fails, and says so without the password
    c, msg = wh.connect((uri:gsub("//", "//:zebra42@")), { root = root, env = "test" })
    assert.is_nil(c)
    assert.matches("cannot log in to redis://:***@127.0.0.1:" .. redis.port .. "/0: authentication failed (", msg, 1, true)
    assert.falsy(msg:find("zebra42", 1, true))
  end)

  it("returns nil and a message when Redis goes away, and reconnects when it is back", function()
    local r2 = start_redis()
    finally(function()
      if r2.pid and alive(r2.pid) then os.execute("kill -CONT " .. r2.pid) end
      stop_redis(r2) -- also when an assertion below fails
    end)
    local c = assert(connect { uri = ("redis://127.0.0.1:%d/0"):format(r2.port), timeout = 0.5 })
    os.execute("kill -STOP " .. r2.pid)
    local jid, msg = c:enqueue("EchoWorker", { name = "stalled" })
    os.execute("kill -CONT " .. r2.pid)
    assert.is_nil(jid)
    assert.matches("cannot push to redis://127%.0%.0%.1:%d+/0: no answer within 0%.5 s %(timed out%)", msg)
    assert.matches(HEX24, (c:enqueue("EchoWorker", { name = "back" })))
    stop_redis(r2)
    jid, msg = c:enqueue("EchoWorker", { name = "gone" })
    assert.is_nil(jid)
    assert.matches("redis://127%.0%.0%.1:%d+/0", msg)
    local jids
    jids, msg = c:enqueue_bulk("EchoWorker", { { name = "a" } })
    assert.is_nil(jids)
    assert.matches("Connection refused", msg)
    local s
    s, msg = c:stats()
    assert.is_nil(s)
    assert.matches("Connection refused", msg)
    c:close()
  end)
end)
