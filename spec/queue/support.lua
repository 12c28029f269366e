-- spec/queue/support.lua: helpers for the BackgroundQueue integration specs
-- (not a spec itself: busted runs only *_spec.lua). A redis-server of each
-- test's own on a random free loopback port, stopped by PID; app roots in
-- BackgroundQueue mode; `workerhost run` in the background, signalled by
-- PID; redis-cli for pushing and inspecting.
--
-- Every process started here is remembered, and S.cleanup() ends the ones
-- still running, each by its own PID (never by name).
local H = require "spec.helpers"
local cjson = require "cjson"

local S = { H = H, cjson = cjson }

S.BIN = os.getenv("WORKERHOST_BIN")
if S.BIN == nil or S.BIN == "" then S.BIN = H.root .. "/build/workerhost" end

local started_hosts, started_redis, started_other, tmpdirs = {}, {}, {}, {}

function S.sleep(s) os.execute("sleep " .. s) end

-- Wall-clock time in seconds, with a fraction.
function S.now()
  local p = io.popen("date +%s.%N")
  local v = tonumber(p:read("l"))
  p:close()
  return v
end

-- Calls pred every `step` seconds until it returns a truthy value or
-- `seconds` have passed. Returns that value, or pred's last answer.
function S.wait_for(pred, seconds, step)
  step = step or 0.05
  local deadline = S.now() + seconds
  repeat
    local v = pred()
    if v then return v end
    S.sleep(step)
  until S.now() > deadline
  return pred()
end

-- True while the process exists and is not a zombie.
function S.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local st = f:read("a")
  f:close()
  return not st:match("^%d+ %b() [ZX]")
end

local function cmdline_of(pid)
  local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- True when a command is installed.
function S.have(cmd)
  local _, status = H.sh("command -v " .. cmd .. " >/dev/null")
  return status == 0
end

-- A new temp dir, removed by S.cleanup.
function S.tmpdir()
  local d = H.tmpdir()
  tmpdirs[#tmpdirs + 1] = d
  return d
end

-- A random 24-hex jid, as Sidekiq makes them.
function S.jid()
  local t = {}
  for i = 1, 24 do t[i] = ("%x"):format(math.random(0, 15)) end
  return table.concat(t)
end

-- Today in UTC, as in the daily stat keys.
function S.utc_day() return os.date("!%Y-%m-%d") end

-- ==== redis ==============================================================

local R = {}
R.__index = R

-- Starts a redis-server on a random loopback port in 20000-60000 (another
-- port when it does not come up). opts.args: extra arguments, e.g.
-- "--appendonly yes --appendfsync always".
function S.redis_start(opts)
  opts = opts or {}
  for _ = 1, 10 do
    local port = math.random(20000, 60000)
    local r = setmetatable({ port = port, dir = S.tmpdir(), args = opts.args or "", n = 0 }, R)
    if r:launch() then
      started_redis[#started_redis + 1] = r
      return r
    end
  end
  error("could not start a redis-server on any of 10 random ports")
end

-- Starts (or starts again) this server on its port, in its dir. Returns
-- true once its own log says it is ready (so the port is ours).
function R:launch(args)
  self.n = self.n + 1
  local log = ("%s/redis.%d.log"):format(self.dir, self.n)
  local pidfile = self.dir .. "/redis.pid"
  os.remove(pidfile)
  os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s --daemonize yes "
    .. "--pidfile %s --logfile %s %s >/dev/null 2>&1"):format(self.port, H.q(self.dir), H.q(pidfile), H.q(log),
      args or self.args))
  local ok = S.wait_for(function()
    local l = H.read(log) or ""
    if l:find("Ready to accept connections", 1, true) then return true end
    if l:find("Could not create server TCP listening socket", 1, true) or l:find("Failed listening", 1, true) then
      return "failed"
    end
  end, 5, 0.02)
  local pid = tonumber((H.read(pidfile) or ""):match("%d+"))
  if ok == true and pid then
    self.pid = pid
    return true
  end
  if pid and S.alive(pid) then os.execute("kill -9 " .. pid) end
  return false
end

-- Sends a signal to the server, by its PID.
function R:signal(sig)
  assert(self.pid, "redis-server not running")
  os.execute(("kill -%s %d"):format(sig, self.pid))
end

-- Stops the server by its PID (SIGTERM unless sig) and waits until it is gone.
function R:stop(sig)
  if self.pid and S.alive(self.pid) then
    os.execute(("kill -%s %d"):format(sig or "TERM", self.pid))
    S.wait_for(function() return not S.alive(self.pid) end, 10, 0.02)
  end
  self.pid = nil
end

function R:uri() return ("redis://127.0.0.1:%d/0"):format(self.port) end

-- redis-cli with the given words, each quoted; returns stdout without the
-- trailing newline.
function R:call(...)
  local words = { "redis-cli", "-p", tostring(self.port) }
  for _, w in ipairs({ ... }) do words[#words + 1] = H.q(w) end
  local p = assert(io.popen(table.concat(words, " ") .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return (out:gsub("\n$", ""))
end

-- The reply as lines (an array reply is one element per line; empty: {}).
function R:lines(...)
  local out = self:call(...)
  local t = {}
  if out == "" then return t end
  for line in (out .. "\n"):gmatch("(.-)\n") do t[#t + 1] = line end
  return t
end

-- The reply as a number (nil or empty: 0).
function R:num(...)
  local out = self:call(...)
  if out == "" then return 0 end
  return assert(tonumber(out), "not a number: " .. out)
end

-- Runs commands given as lines in redis-cli's own syntax (arguments quoted
-- as at its prompt: '...', or "..." with \x escapes).
function R:pipe(lines)
  local f = os.tmpname()
  H.write(f, table.concat(lines, "\n") .. "\n")
  local p = assert(io.popen(("redis-cli -p %d < %s 2>&1"):format(self.port, H.q(f))))
  local out = p:read("a")
  p:close()
  os.remove(f)
  return out
end

-- A payload quoted for R:pipe.
local function sq(s)
  assert(not s:find("'", 1, true) and not s:find("\n", 1, true), "payload needs other quoting: " .. s)
  return "'" .. s .. "'"
end
S.sq = sq

-- LPUSHes payloads (strings, in order: the first is the oldest) to
-- queue:<q> and SADDs q to `queues`, as Sidekiq's client does.
function R:push(q, payloads)
  local lines = { "SADD queues " .. sq(q) }
  local i = 1
  while i <= #payloads do
    local words = { "LPUSH", sq("queue:" .. q) }
    for k = i, math.min(i + 99, #payloads) do words[#words + 1] = sq(payloads[k]) end
    lines[#lines + 1] = table.concat(words, " ")
    i = i + 100
  end
  return self:pipe(lines)
end

-- ZADDs payloads with a score each: items = { {score, payload}, ... }.
function R:zadd(key, items)
  local lines = {}
  for _, it in ipairs(items) do
    lines[#lines + 1] = ("ZADD %s %.6f %s"):format(sq(key), it[1], sq(it[2]))
  end
  return self:pipe(lines)
end

-- ZRANGE key 0 -1 WITHSCORES as { {member =, score =}, ... }.
function R:zitems(key)
  local l = self:lines("ZRANGE", key, "0", "-1", "WITHSCORES")
  local t = {}
  for i = 1, #l - 1, 2 do t[#t + 1] = { member = l[i], score = tonumber(l[i + 1]) } end
  return t
end

-- The member of a ZSET whose payload has this jid (its raw text), and its score.
function R:zfind(key, jid)
  for _, it in ipairs(self:zitems(key)) do
    if it.member:find('"jid":"' .. jid .. '"', 1, true) then return it.member, it.score end
  end
  return nil
end

-- ==== payloads =============================================================

-- A job in Sidekiq's shape, compact as Ruby's JSON.generate writes it.
-- o.args: the args array as JSON text (default [{"n":1}]); o.retry: JSON
-- text (default "true"; false leaves the field out); o.enqueued_at,
-- o.created_at: JSON text (enqueued_at = false leaves it out); o.extra: raw
-- JSON members appended at the end ('"big":1,"f":1.10').
function S.job(o)
  o = o or {}
  local parts = {
    '"class":' .. cjson.encode(o.class or "X"),
    '"args":' .. (o.args or '[{"n":1}]'),
  }
  if o.retry ~= false then parts[#parts + 1] = '"retry":' .. tostring(o.retry or "true") end
  parts[#parts + 1] = '"queue":' .. cjson.encode(o.queue or "default")
  parts[#parts + 1] = '"jid":"' .. (o.jid or S.jid()) .. '"'
  parts[#parts + 1] = '"created_at":' .. (o.created_at or "1700000000.25")
  if o.enqueued_at ~= false then parts[#parts + 1] = '"enqueued_at":' .. (o.enqueued_at or "1700000000.5") end
  if o.extra then parts[#parts + 1] = o.extra end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- n jobs made by S.job(o), each with its own jid; returns the payloads and
-- the jids, in push order.
function S.jobs(n, o)
  local payloads, jids = {}, {}
  for i = 1, n do
    local oo = {}
    for k, v in pairs(o or {}) do oo[k] = v end
    oo.jid = S.jid()
    payloads[i], jids[i] = S.job(oo), oo.jid
  end
  return payloads, jids
end

-- ==== apps and workers ======================================================

-- The source of a worker script that appends a line "jid queue pid
-- enqueued_at retry_count" to the file `out` (at the end of perform, or at
-- its start with record = "start"). w: name, queue, args (Lua source of the
-- args table, default '{ n = "integer" }'), retry (Lua source), spin
-- (seconds of busy Lua work on the wall clock; interruptible), loop
-- (iterations of an empty Lua loop), fail_negative (raise when args.n < 0).
function S.worker_source(out, w)
  local fields = {}
  if w.name then fields[#fields + 1] = ("name = %q,"):format(w.name) end
  fields[#fields + 1] = ("queue = %q,"):format(w.queue or "default")
  if w.retry then fields[#fields + 1] = "retry = " .. w.retry .. "," end
  fields[#fields + 1] = "args = " .. (w.args or '{ n = "integer" }') .. ","
  local record = [[
    local f = assert(io.open(OUT, "a"))
    f:write(table.concat({ job.jid, job.queue, PID, string.format("%.6f", job.enqueued_at or 0),
      tostring(job.retry_count) }, " ") .. "\n")
    f:close()
]]
  local body = {}
  if w.record == "start" then body[#body + 1] = record end
  if w.spin then body[#body + 1] = ("    spin(%s)\n"):format(w.spin) end
  if w.loop then body[#body + 1] = ("    for _ = 1, %d do end\n"):format(w.loop) end
  if w.fail_negative then
    body[#body + 1] = '    if type(args.n) == "number" and args.n < 0 then error("boom " .. args.n) end\n'
  end
  if w.record ~= "start" then body[#body + 1] = record end
  return ([[
local wh = require "workerhost"
local OUT = %q
local function pid()
  local f = io.open("/proc/self/stat")
  local s = f:read("l")
  f:close()
  return s:match("^%%d+")
end
local PID = pid()
local function uptime()
  local f = io.open("/proc/uptime")
  local v = f:read("n")
  f:close()
  return v
end
local function spin(seconds) -- busy Lua work, measured on the wall clock
  local stop = uptime() + seconds
  while uptime() < stop do for _ = 1, 20000 do end end
end
return wh.worker {
  %s
  perform = function(args, job)
%s  end,
}
]]):format(out, table.concat(fields, "\n  "), table.concat(body))
end

-- An app root for BackgroundQueue against redis r. o: concurrency (2),
-- queues (YAML text, default "[critical, default]"), shutdown_timeout, reload, uri
-- (default r's), log_level (info), workers = { file = worker spec for
-- S.worker_source, or source text }. Returns app { root, out, r }.
function S.app(r, o)
  o = o or {}
  local root = S.tmpdir()
  local out = root .. "/runs.txt"
  local cfg = { "workers:", "  mode: BackgroundQueue", "  concurrency: " .. (o.concurrency or 2) }
  if o.queues ~= false then cfg[#cfg + 1] = "  queues: " .. (o.queues or "[critical, default]") end
  if o.shutdown_timeout then cfg[#cfg + 1] = "  shutdown_timeout: " .. o.shutdown_timeout end
  if o.reload ~= nil then cfg[#cfg + 1] = "  reload: " .. tostring(o.reload) end
  cfg[#cfg + 1] = "queue:"
  cfg[#cfg + 1] = "  uri: " .. (o.uri or r:uri())
  cfg[#cfg + 1] = "logger:"
  cfg[#cfg + 1] = "  level: " .. (o.log_level or "info")
  H.write(root .. "/config/development.yaml", table.concat(cfg, "\n") .. "\n")
  H.mkdir(root .. "/workers")
  local workers = o.workers or { ["x.lua"] = { name = "X", fail_negative = true } }
  for file, w in pairs(workers) do
    H.write(root .. "/workers/" .. file, type(w) == "string" and w or S.worker_source(out, w))
  end
  return { root = root, out = out, r = r }
end

-- The runs the workers recorded: a list of {jid, queue, pid, enqueued_at,
-- retry_count}, the number of runs by jid, and the number of runs.
function S.runs(app)
  local list, count, n = {}, {}, 0
  local text = H.read(app.out) or ""
  for line in text:gmatch("[^\n]+") do
    local jid, q, pid, enq, rc = line:match("^(%S+) (%S+) (%S+) (%S+) (%S+)$")
    assert(jid, "bad line in the runs file: " .. line)
    list[#list + 1] = { jid = jid, queue = q, pid = pid, enqueued_at = tonumber(enq), retry_count = rc }
    count[jid] = (count[jid] or 0) + 1
    n = n + 1
  end
  return list, count, n
end

function S.run_count(app)
  local _, _, n = S.runs(app)
  return n
end

-- Waits until at least n runs are recorded; returns how many there are.
function S.wait_runs(app, n, seconds)
  S.wait_for(function() return S.run_count(app) >= n end, seconds or 10)
  return S.run_count(app)
end

-- The number of distinct jids in a count table.
function S.distinct(count)
  local n = 0
  for _ in pairs(count) do n = n + 1 end
  return n
end

-- ==== the host =============================================================

local Host = {}
Host.__index = Host

-- Starts `workerhost --root <root> run` in the background; name tells the
-- log, pid and status files of several hosts of one root apart; opts.env:
-- NAME=value words put before the command (already quoted as needed). Returns as
-- soon as the process exists (see Host:wait_ready).
function S.host_start(app, name, opts)
  name = name or "host"
  opts = opts or {}
  local h = setmetatable({ app = app, name = name, log = ("%s/%s.log"):format(app.root, name),
    pidfile = ("%s/%s.pid"):format(app.root, name), statusfile = ("%s/%s.status"):format(app.root, name) }, Host)
  os.remove(h.pidfile)
  os.remove(h.statusfile)
  local script = ("cd %s && (env -u WORKERHOST_ENV %s %s --root %s run >> %s 2>&1 & echo $! > %s; wait $!; "
    .. "echo $? > %s) </dev/null >/dev/null 2>&1 &"):format(H.q(app.root), opts.env or "", H.q(S.BIN), H.q(app.root),
      H.q(h.log), H.q(h.pidfile), H.q(h.statusfile))
  assert(os.execute(script))
  local pid = S.wait_for(function() return tonumber((H.read(h.pidfile) or ""):match("%d+")) end, 5, 0.01)
  h.pid = assert(pid, "workerhost run did not start")
  started_hosts[#started_hosts + 1] = h
  return h
end

function Host:logtext() return H.read(self.log) or "" end

function Host:log_has(text) return self:logtext():find(text, 1, true) ~= nil end

-- The last n lines of the log (for failure messages).
function Host:tail(n)
  n = n or 30
  local lines = {}
  for line in self:logtext():gmatch("[^\n]+") do lines[#lines + 1] = line end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

-- The last n log lines that are not a job's "done" line.
function Host:events(n)
  n = n or 30
  local lines = {}
  for line in self:logtext():gmatch("[^\n]+") do
    if not line:find("] done in ", 1, true) then lines[#lines + 1] = line end
  end
  return table.concat(lines, "\n", math.max(1, #lines - n + 1))
end

-- Waits until this host has connected to Redis and registered itself in
-- `processes` and wh:registry; returns its identity.
function Host:wait_ready(seconds)
  local id = S.wait_for(function()
    return self:logtext():match("redis: connected to %S+ as (%S+)")
  end, seconds or 5, 0.02)
  assert(id, "host " .. self.name .. " did not connect; log:\n" .. self:tail())
  self.identity = id
  local r = self.app.r
  assert(S.wait_for(function()
    return r:call("SISMEMBER", "processes", id) == "1" and r:call("SISMEMBER", "wh:registry", id) == "1"
  end, 5, 0.02), "host " .. self.name .. " did not register")
  return id
end

function Host:alive() return S.alive(self.pid) end

-- Sends a signal, by PID, if the process is still this workerhost.
function Host:signal(sig)
  if S.alive(self.pid) and cmdline_of(self.pid):find("workerhost", 1, true) then
    os.execute(("kill -%s %d"):format(sig, self.pid))
  end
end

-- The exit status once the process has ended and been reaped (nil if not
-- within `seconds`).
function Host:wait_exit(seconds)
  return S.wait_for(function()
    local s = H.read(self.statusfile)
    return s and tonumber(s:match("%d+"))
  end, seconds or 10, 0.02)
end

-- SIGKILL; waits until the process is gone and reaped.
function Host:kill9()
  self:signal("KILL")
  return self:wait_exit(5)
end

-- ==== a proxy that makes connections half-open =============================

-- A TCP proxy (Ruby) in front of redis r. proxy:freeze(word) turns every
-- connection open at that moment that has sent a command containing word
-- ("*": all of them) half-open: its commands still reach Redis and run, but
-- no reply comes back, as when a link dies after the request went through.
-- Connections made later work normally.
local PROXY_RB = [=[
require "socket"
target = Integer(ARGV[0])
port_file, flag = ARGV[1], ARGV[2]
linger = Float(ARGV[3] || "0") # seconds between a client's close and ours towards Redis
server = TCPServer.new("127.0.0.1", 0)
File.write(port_file + ".tmp", server.addr[1].to_s)
File.rename(port_file + ".tmp", port_file)
conns = []
lock = Mutex.new
Thread.new do
  loop do
    if File.exist?(flag)
      word = File.read(flag).strip
      lock.synchronize { conns.each { |c| c[:frozen] = true if word == "*" || c[:seen].include?(word) } }
      File.delete(flag)
    end
    sleep 0.01
  end
end
loop do
  client = server.accept
  upstream = TCPSocket.new("127.0.0.1", target)
  st = { frozen: false, seen: +"" }
  lock.synchronize { conns << st }
  Thread.new do
    begin
      loop do
        d = client.readpartial(65536)
        lock.synchronize { st[:seen] << d if st[:seen].size < 4096 }
        upstream.write(d)
      end
    rescue StandardError
    end
    sleep linger if linger > 0
    upstream.close rescue nil
    client.close rescue nil
  end
  Thread.new do
    begin
      loop do
        d = upstream.readpartial(65536)
        client.write(d) unless st[:frozen]
      end
    rescue StandardError
    end
    client.close rescue nil
  end
end
]=]

-- opts.linger: seconds the proxy waits, after a client closes a connection,
-- before it closes its own towards Redis (the close reaches Redis late, as
-- through any proxy or a slow network path: connections are not ordered
-- with one another). Returns { port, pid, uri(), freeze(word) }.
function S.proxy_start(r, opts)
  opts = opts or {}
  local dir = S.tmpdir()
  H.write(dir .. "/proxy.rb", PROXY_RB)
  local flag = dir .. "/freeze"
  os.execute(("ruby %s %d %s %s %s </dev/null >%s 2>&1 & echo $! > %s"):format(H.q(dir .. "/proxy.rb"), r.port,
    H.q(dir .. "/port"), H.q(flag), tostring(opts.linger or 0), H.q(dir .. "/proxy.log"), H.q(dir .. "/pid")))
  local pid = tonumber((H.read(dir .. "/pid") or ""):match("%d+"))
  if pid then started_other[#started_other + 1] = pid end
  local port = S.wait_for(function() return tonumber((H.read(dir .. "/port") or ""):match("%d+")) end, 5, 0.02)
  assert(port, "the proxy did not start: " .. (H.read(dir .. "/proxy.log") or ""))
  return {
    port = port,
    pid = pid,
    uri = function() return ("redis://127.0.0.1:%d/0"):format(port) end,
    freeze = function(_, word)
      H.write(flag, word or "*")
      assert(S.wait_for(function() return not H.exists(flag) end, 2, 0.01), "the proxy did not take the flag")
    end,
  }
end

-- ==== cleanup ================================================================

-- Ends every host, proxy and redis-server these helpers started that is
-- still running (each by its PID) and removes the temp dirs.
function S.cleanup()
  for _, h in ipairs(started_hosts) do
    if S.alive(h.pid) then
      h:signal("KILL")
      h:wait_exit(5)
    end
  end
  started_hosts = {}
  for _, r in ipairs(started_redis) do
    if r.pid then
      if S.alive(r.pid) then os.execute("kill -CONT " .. r.pid) end
      r:stop("KILL")
    end
  end
  started_redis = {}
  for _, pid in ipairs(started_other) do
    if S.alive(pid) then os.execute("kill -9 " .. pid) end
  end
  started_other = {}
  for _, d in ipairs(tmpdirs) do H.rmdir(d) end
  tmpdirs = {}
end

-- ==== Redis state ==========================================================

-- The summed lengths of every in-flight list of ours (wh:inflight:*).
function S.inflight_total(r)
  local total = 0
  for _, k in ipairs(r:lines("KEYS", "wh:inflight:*")) do
    if r:call("TYPE", k) == "list" then total = total + r:num("LLEN", k) end
  end
  return total
end

function S.decode(s) return cjson.decode(s) end

return S
