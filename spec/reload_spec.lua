-- Reloading worker scripts in a running `workerhost run` (BackgroundAsync),
-- as a user does it: SIGHUP, `workerhost reload`, and (workers.reload) saving
-- files. What the job-level semantics are (running job on the old code, new
-- jobs on the new, the check tied to the generation, no job lost in a storm
-- of reloads) is tested in host/tests/test_host_reload.c, where jobs can be
-- enqueued into the running engine.
local BIN = assert(os.getenv("WORKERHOST_BIN"), "WORKERHOST_BIN is not set")

local function sh(cmd)
  return os.execute(cmd)
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function put(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- An editor's save: a temp file renamed over the script.
local function save(path, text)
  put(path .. ".tmp~", text)
  assert(os.rename(path .. ".tmp~", path))
end

local function worker(msg)
  return "local wh = require 'workerhost'\nlocal lib = require 'greeting'\n" ..
    "return wh.worker { perform = function() wh.log.info(lib.hello .. ' " .. msg .. "') end }\n"
end

local function make_root(reload)
  local root = os.tmpname()
  os.remove(root)
  assert(sh("mkdir -p " .. root .. "/config " .. root .. "/workers " .. root .. "/lib"))
  put(root .. "/config/development.yaml", "workers:\n  mode: BackgroundAsync\n  concurrency: 2\n" ..
    "  shutdown_timeout: 5\n" .. (reload == nil and "" or ("  reload: " .. tostring(reload) .. "\n")))
  put(root .. "/workers/echo_worker.lua", worker("v1"))
  put(root .. "/lib/greeting.lua", "return { hello = 'hi' }\n")
  return root
end

local function wait_for(pred, seconds)
  for _ = 1, (seconds or 30) * 50 do
    local v = pred()
    if v then return v end
    sh("sleep 0.02")
  end
  return nil
end

local function start(root)
  local script = ("cd %s && (%s run > run.log 2>&1 & echo $! > run.pid; wait $!; echo $? > run.status) &")
    :format(root, BIN)
  assert(sh("sh -c " .. q(script)))
  local pid = wait_for(function()
    local s = slurp(root .. "/tmp/workerhost.pid")
    return s and s:match("%d+")
  end)
  assert(pid, "no tmp/workerhost.pid")
  assert(wait_for(function() return (slurp(root .. "/run.log") or ""):find("running:", 1, true) end))
  return tonumber(pid)
end

local function log_of(root) return slurp(root .. "/run.log") or "" end

local function count(hay, needle)
  local n, i = 0, 1
  while true do
    local s, e = hay:find(needle, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

local function log_has(root, text)
  return wait_for(function() return log_of(root):find(text, 1, true) end)
end

-- Runs `workerhost reload ...` in root; returns stdout+stderr and the status.
local function reload(root, ...)
  local words = {}
  for _, w in ipairs({ ... }) do words[#words + 1] = q(w) end
  local p = assert(io.popen("cd " .. q(root) .. " && timeout 90 " .. q(BIN) .. " reload " ..
    table.concat(words, " ") .. " 2>&1; echo \"EXIT:$?\""))
  local out = p:read("a")
  p:close()
  local body, status = out:match("^(.-)EXIT:(%d+)\n?$")
  return body, tonumber(status)
end

local function generation(root)
  local s = slurp(root .. "/tmp/workerhost.reload") or ""
  return tonumber(s:match("generation (%d+)"))
end

local function attempts(root)
  local s = slurp(root .. "/tmp/workerhost.reload") or ""
  return tonumber(s:match("attempt (%d+)")) or 0
end

local function stop(root, pid)
  assert(sh("kill -TERM " .. pid))
  return wait_for(function()
    local s = slurp(root .. "/run.status")
    return s and tonumber(s:match("%d+"))
  end)
end

describe("reloading workers", function()
  local root, pid
  after_each(function()
    if pid then stop(root, pid) end
    if root then sh("rm -rf " .. q(root)) end
    root, pid = nil, nil
  end)

  it("reloads on SIGHUP: new workers appear, the generation is logged", function()
    root = make_root(false)
    pid = start(root)
    put(root .. "/workers/other_worker.lua",
      "local wh = require 'workerhost'\nreturn wh.worker { perform = function() end }\n")
    assert(sh("kill -HUP " .. pid))
    assert.truthy(log_has(root, "reloaded: generation 2, 2 workers (EchoWorker, OtherWorker)"))
    assert.truthy(log_has(root, "generation 2: all 2 threads switched"))
    assert.are.equal(2, wait_for(function() return generation(root) == 2 and 2 end))
  end)

  it("workerhost reload reports the new generation, or the error with file and line", function()
    root = make_root(false)
    pid = start(root)
    local out, status = reload(root)
    assert.are.equal(0, status, out)
    assert.truthy(out:find("reloaded workerhost pid " .. pid .. ": generation 2", 1, true), out)

    put(root .. "/workers/echo_worker.lua", "local wh = require 'workerhost'\n\nreturn wh.worker { perform = }\n")
    out, status = reload(root)
    assert.are.equal(2, status, out)
    assert.truthy(out:find("reload failed, generation 2 keeps running: workers/echo_worker.lua:3:", 1, true), out)

    -- an error while the definition loads, in an app module it requires
    put(root .. "/workers/echo_worker.lua", worker("v2"))
    put(root .. "/lib/greeting.lua", "local t = nil\nreturn { hello = t.x }\n")
    out, status = reload(root)
    assert.are.equal(2, status, out)
    assert.truthy(out:find("lib/greeting.lua:2:", 1, true), out)

    -- a bad schema
    put(root .. "/lib/greeting.lua", "return { hello = 'hi' }\n")
    put(root .. "/workers/echo_worker.lua",
      "local wh = require 'workerhost'\nreturn wh.worker {\n  args = { n = 'nope' },\n  perform = function() end }\n")
    out, status = reload(root)
    assert.are.equal(2, status, out)
    assert.truthy(out:find("workers/echo_worker.lua:2:", 1, true), out)
    assert.truthy(out:find('unknown type "nope"', 1, true), out)

    out, status = reload(root, "--status")
    assert.are.equal(0, status, out)
    assert.truthy(out:find("generation 2, last reload", 1, true), out)
    assert.truthy(log_has(root, "reload failed, generation 2 keeps running"))
  end)

  it("workerhost reload without a running host says so", function()
    root = make_root(false)
    local out, status = reload(root)
    assert.are.equal(5, status)
    assert.truthy(out:find("no running host found", 1, true), out)
    assert(sh("mkdir -p " .. root .. "/tmp"))
    put(root .. "/tmp/workerhost.pid", "999999999\n")
    out, status = reload(root)
    assert.are.equal(5, status)
    assert.truthy(out:find("stale pid file", 1, true), out)
  end)

  it("removes its pid file when it stops", function()
    root = make_root(false)
    pid = start(root)
    assert.are.equal(0, stop(root, pid))
    pid = nil
    assert.is_nil(slurp(root .. "/tmp/workerhost.pid"))
  end)

  it("workerhost stats shows the local host's generation", function()
    if not sh("command -v redis-server >/dev/null 2>&1") then
      pending("no redis-server installed")
      return
    end
    -- a redis-server of our own on a free port (retried when taken)
    local port, rpid, rdir
    for _ = 1, 10 do
      port = math.random(20000, 60000)
      rdir = os.tmpname()
      os.remove(rdir)
      assert(sh("mkdir -p " .. q(rdir)))
      sh(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s --daemonize no "
        .. "--logfile %s </dev/null >/dev/null 2>&1 & echo $! > %s"):format(port, q(rdir), q(rdir .. "/redis.log"),
        q(rdir .. "/pid")))
      rpid = tonumber((slurp(rdir .. "/pid") or ""):match("%d+"))
      if wait_for(function()
        return (slurp(rdir .. "/redis.log") or ""):find("Ready to accept connections", 1, true)
      end, 5) then break end
      if rpid then sh("kill " .. rpid) end
      sh("rm -rf " .. q(rdir))
      rpid = nil
    end
    assert(rpid, "could not start redis-server")
    local ok, err = pcall(function()
      root = make_root(false)
      local f = assert(io.open(root .. "/config/development.yaml", "a"))
      f:write(("queue:\n  uri: redis://127.0.0.1:%d/0\n"):format(port))
      f:close()
      pid = start(root)
      local out, status = reload(root)
      assert.are.equal(0, status, out)
      local p = assert(io.popen("cd " .. q(root) .. " && " .. q(BIN) .. " stats 2>&1"))
      out = p:read("a")
      p:close()
      assert.truthy(out:find("local host: pid " .. pid .. ", worker code generation 2, last reload", 1, true), out)
      p = assert(io.popen("cd " .. q(root) .. " && " .. q(BIN) .. " stats --json 2>&1"))
      out = p:read("a")
      p:close()
      assert.truthy(out:find('"local":{"pid":' .. pid .. ',"generation":2,', 1, true), out)
    end)
    sh("kill " .. rpid)
    sh("rm -rf " .. q(rdir))
    assert(ok, err)
  end)

  describe("with workers.reload (the file watch)", function()
    local function reloads(r) return count(log_of(r), "reload requested (files changed)") end
    -- waits for n file-triggered attempts, then a while for any extra one
    local function settle(r, n)
      wait_for(function() return attempts(r) >= n end)
      sh("sleep 1")
      return reloads(r)
    end

    it("reloads once per save, per checkout of many files, per new or removed file", function()
      root = make_root(nil) -- development: on by default
      pid = start(root)
      assert.truthy(log_has(root, "workers.reload: watching 2 folders"))

      save(root .. "/workers/echo_worker.lua", worker("v2"))
      assert.are.equal(1, settle(root, 1))
      assert.are.equal(2, generation(root))

      for i = 1, 30 do
        put(("%s/workers/w%02d_worker.lua"):format(root, i),
          "local wh = require 'workerhost'\nreturn wh.worker { perform = function() end }\n")
      end
      assert.are.equal(2, settle(root, 2))
      assert.are.equal(3, generation(root))
      assert.truthy(log_has(root, "generation 3, 31 workers"))

      assert(os.remove(root .. "/workers/w01_worker.lua"))
      assert.are.equal(3, settle(root, 3))
      assert.truthy(log_has(root, "generation 4, 30 workers"))

      -- an app module, in a folder made after the start
      assert(sh("mkdir -p " .. root .. "/lib/extra"))
      put(root .. "/lib/extra/util.lua", "return {}\n")
      assert.are.equal(4, settle(root, 4))
      save(root .. "/lib/extra/util.lua", "return { v = 2 }\n")
      assert.are.equal(5, settle(root, 5))

      -- a broken save keeps the old code; fixing it reloads again
      save(root .. "/workers/echo_worker.lua", "syntax error here\n")
      assert.are.equal(6, settle(root, 6))
      assert.truthy(log_has(root, "reload failed, generation 6 keeps running: workers/echo_worker.lua:1:"))
      save(root .. "/workers/echo_worker.lua", worker("v3"))
      assert.are.equal(7, settle(root, 7))
      assert.are.equal(7, generation(root))
    end)

    it("does not watch when workers.reload is false; SIGHUP still works", function()
      root = make_root(false)
      pid = start(root)
      assert.falsy(log_of(root):find("watching", 1, true))
      save(root .. "/workers/echo_worker.lua", worker("v2"))
      sh("sleep 1")
      assert.are.equal(1, generation(root))
      assert(sh("kill -HUP " .. pid))
      assert.are.equal(2, wait_for(function() return generation(root) == 2 and 2 end))
    end)
  end)
end)
