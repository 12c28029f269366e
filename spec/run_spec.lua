-- workerhost run: the host until a signal, as a user starts it. SIGTERM and
-- SIGINT stop it gracefully, a second SIGINT at once, SIGTSTP quiets it.
local BIN = assert(os.getenv("WORKERHOST_BIN"), "WORKERHOST_BIN is not set")

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  return ok, how, code
end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- extra: more lines under workers:
local function make_root(mode, extra)
  local root = os.tmpname()
  os.remove(root)
  assert(sh("mkdir -p " .. root .. "/config " .. root .. "/workers"))
  local f = assert(io.open(root .. "/config/development.yaml", "w"))
  f:write("workers:\n  mode: " .. mode .. "\n  concurrency: 2\n  shutdown_timeout: 5\n" .. (extra or ""))
  f:close()
  f = assert(io.open(root .. "/workers/noop.lua", "w"))
  f:write("local wh = require 'workerhost'\nreturn wh.worker { perform = function() end }\n")
  f:close()
  return root
end

-- Starts `workerhost run` in the background; returns its pid and the paths
-- of its log and of the file that will hold its exit status. prefix (no
-- single quotes) goes before the command, e.g. setpriv.
local function start(root, prefix)
  local script = ("cd %s && (%s%s run > run.log 2>&1 & echo $! > run.pid; wait $!; echo $? > run.status) &")
    :format(root, prefix or "", BIN)
  assert(sh("sh -c '" .. script .. "'"))
  local pid
  for _ = 1, 200 do
    pid = slurp(root .. "/run.pid")
    if pid and pid:match("%d") then break end
    sh("sleep 0.02")
  end
  return assert(tonumber(pid:match("%d+")))
end

local function wait_for(pred, seconds)
  for _ = 1, seconds * 50 do
    local v = pred()
    if v then return v end
    sh("sleep 0.02")
  end
  return nil
end

local function status_of(root)
  return wait_for(function()
    local s = slurp(root .. "/run.status")
    return s and s:match("%d+") and tonumber(s:match("%d+"))
  end, 10)
end

local function log_has(root, text)
  return wait_for(function()
    local s = slurp(root .. "/run.log")
    return s and s:find(text, 1, true)
  end, 10)
end

describe("workerhost run", function()
  local root
  after_each(function() if root then sh("rm -rf " .. root) end end)

  it("runs until SIGTERM and stops cleanly", function()
    root = make_root("BackgroundAsync")
    local pid = start(root)
    assert.truthy(log_has(root, "running: BackgroundAsync mode, 2 threads"))
    assert(sh("kill -TERM " .. pid))
    assert.are.equal(0, status_of(root))
    assert.truthy(log_has(root, "Terminated: stopping"))
  end)

  it("quiets on SIGTSTP, then stops on SIGINT", function()
    root = make_root("BackgroundAsync")
    local pid = start(root)
    assert.truthy(log_has(root, "running"))
    assert(sh("kill -TSTP " .. pid))
    assert.truthy(log_has(root, "quiet: no new jobs will start"))
    assert(sh("kill -INT " .. pid))
    assert.are.equal(0, status_of(root))
  end)

  -- Linux makes /proc/PID owned by root while a process is not dumpable
  -- (prctl PR_SET_DUMPABLE 0), and by its user otherwise; so a host run as
  -- root is run as nobody here, to tell the two apart.
  local function run_as()
    local p = io.popen("id -u")
    local uid = tonumber(p:read("a"))
    p:close()
    if uid ~= 0 then return "", uid end
    local prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups "
    if not sh(prefix .. BIN .. " version > /dev/null 2>&1") then return nil end
    return prefix, 65534
  end

  local function owner(path)
    local p = io.popen("stat -c %u " .. path .. " 2> /dev/null")
    local s = p:read("a")
    p:close()
    return tonumber(s)
  end

  it("is not dumpable, unless workers.allow_core_dumps is true", function()
    local prefix, uid = run_as()
    if prefix == nil then
      pending("needs setpriv, and the build readable by nobody, to run the host as another user")
      return
    end
    for _, case in ipairs { { "", 0 }, { "  allow_core_dumps: false\n", 0 }, { "  allow_core_dumps: true\n", uid } } do
      root = make_root("BackgroundAsync", case[1])
      assert(sh("chmod 755 " .. root))
      local pid = start(root, prefix)
      local ok, failure = pcall(function()
        assert.truthy(log_has(root, "running: BackgroundAsync mode"))
        assert.are.equal(case[2], owner("/proc/" .. pid .. "/status"), case[1])
      end)
      assert(sh("kill -TERM " .. pid))
      assert.are.equal(0, status_of(root))
      if not ok then error(failure, 0) end
      sh("rm -rf " .. root)
    end
  end)

  it("can be reloaded by its user although its /proc/PID/exe is closed to it", function()
    local prefix, uid = run_as()
    if prefix == nil or prefix == "" then
      pending("needs root and setpriv, to run the host and the reload as nobody")
      return
    end
    root = make_root("BackgroundAsync")
    assert(sh("chmod 755 " .. root .. " && mkdir " .. root .. "/tmp && chown " .. uid .. " " .. root .. "/tmp"))
    local pid = start(root, prefix)
    local ok, failure = pcall(function()
      assert.truthy(log_has(root, "running: BackgroundAsync mode"))
      assert.falsy(sh(prefix .. "readlink /proc/" .. pid .. "/exe > /dev/null 2>&1"))
      local p = io.popen(prefix .. BIN .. " --root " .. root .. " reload --local 2>&1; echo EXIT:$?")
      local out = p:read("a")
      p:close()
      assert.matches("reloaded workerhost pid " .. pid, out, 1, true)
      assert.matches("EXIT:0", out, 1, true)
    end)
    assert(sh("kill -TERM " .. pid))
    assert.are.equal(0, status_of(root))
    if not ok then error(failure, 0) end
  end)

  it("refuses ForegroundBlocking, where there is nothing to run", function()
    root = make_root("ForegroundBlocking")
    start(root)
    assert.are.equal(2, status_of(root))
    assert.truthy(log_has(root, "there is nothing to run"))
  end)

end)
