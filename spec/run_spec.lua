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

local function make_root(mode)
  local root = os.tmpname()
  os.remove(root)
  assert(sh("mkdir -p " .. root .. "/config " .. root .. "/workers"))
  local f = assert(io.open(root .. "/config/development.yaml", "w"))
  f:write("workers:\n  mode: " .. mode .. "\n  concurrency: 2\n  shutdown_timeout: 5\n")
  f:close()
  f = assert(io.open(root .. "/workers/noop.lua", "w"))
  f:write("local wh = require 'workerhost'\nreturn wh.worker { perform = function() end }\n")
  f:close()
  return root
end

-- Starts `workerhost run` in the background; returns its pid and the paths
-- of its log and of the file that will hold its exit status.
local function start(root)
  local script = ("cd %s && (%s run > run.log 2>&1 & echo $! > run.pid; wait $!; echo $? > run.status) &")
    :format(root, BIN)
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

  it("refuses ForegroundBlocking, where there is nothing to run", function()
    root = make_root("ForegroundBlocking")
    start(root)
    assert.are.equal(2, status_of(root))
    assert.truthy(log_has(root, "there is nothing to run"))
  end)

end)
