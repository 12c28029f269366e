-- workerhost.testing: loading apps from a folder, performing jobs, nested
-- jobs, spies and stubs, and leaving busted alone.
local saved = {
  exit = os.exit,
  path = package.path,
  cpath = package.cpath,
  require = require,
  error = error,
  pcall = pcall,
}
local wh = require "workerhost"
local testing = require "workerhost.testing"
local H = require "spec.helpers"

local HEADER = 'local wh = require "workerhost"\n'

describe("workerhost.testing", function()
  local root, app

  before_each(function()
    root = H.tmpdir()
    H.mkdir(root .. "/workers")
  end)

  after_each(function()
    if app then app:close() end
    app = nil
    H.rmdir(root)
  end)

  local function script(name, body)
    H.write(root .. "/workers/" .. name, HEADER .. body)
    return root .. "/workers/" .. name
  end

  -- A worker that raises on line 4 of its file.
  local BOOM = table.concat({
    "return wh.worker {",
    '  args = { x = "integer" },',
    "  perform = function(args)",
    '    error("boom " .. args.x)',
    "  end,",
    "}",
  }, "\n")

  describe("testing.app", function()
    it("loads every worker script of <root>/workers", function()
      script("a_worker.lua", "return wh.worker { perform = function() end }")
      script("b_worker.lua", 'return wh.worker { name = "Bee", queue = "q", perform = function() end }')
      H.write(root .. "/workers/notes.txt", "not a script")
      app = testing.app { root = root }
      local names = {}
      for name in pairs(app.workers) do names[#names + 1] = name end
      table.sort(names)
      assert.are.same({ "AWorker", "Bee" }, names)
      assert.are.equal(root .. "/workers/b_worker.lua", app.files.Bee)
      assert.are.equal("q", app.workers.Bee.queue)
    end)

    it("loads only the files named in only", function()
      script("a_worker.lua", "return wh.worker { perform = function() end }")
      script("b_worker.lua", "return wh.worker { perform = function() end }")
      app = testing.app { root = root, only = { "b_worker.lua" } }
      assert.is_nil(app.workers.AWorker)
      assert.is_not_nil(app.workers.BWorker)
    end)

    it("takes the scripts folder from scripts", function()
      H.write(root .. "/jobs/c_worker.lua", HEADER .. "return wh.worker { perform = function() end }")
      app = testing.app { scripts = root .. "/jobs" }
      assert.is_not_nil(app.workers.CWorker)
    end)

    it("refuses a missing scripts folder", function()
      local ok, err = pcall(testing.app, { root = root .. "/nope" })
      assert.is_false(ok)
      assert.matches("workerhost.testing: cannot open " .. root .. "/nope/workers", err, 1, true)
    end)

    it("refuses a missing file named in only", function()
      local ok, err = pcall(testing.app, { root = root, only = { "nope.lua" } })
      assert.is_false(ok)
      assert.matches(root .. "/workers/nope.lua", err, 1, true)
    end)

    it("refuses the same worker name in two files", function()
      script("one.lua", 'return wh.worker { name = "Same", perform = function() end }')
      script("two.lua", 'return wh.worker { name = "Same", perform = function() end }')
      assert.has_error(function() testing.app { root = root } end,
        ("workerhost.testing: worker Same is defined twice (%s/workers/one.lua and %s/workers/two.lua)"):format(root, root))
    end)

    it("refuses a script that does not return wh.worker{...}", function()
      script("plain.lua", "return { perform = function() end }")
      assert.has_error(function() testing.app { root = root } end,
        root .. "/workers/plain.lua: the script must return wh.worker{...}, got table")
      script("plain.lua", "local x = 1")
      assert.has_error(function() testing.app { root = root } end,
        root .. "/workers/plain.lua: the script must return wh.worker{...}, got nil")
    end)

    it("refuses a script with a syntax error, with file and line", function()
      script("broken.lua", "return wh.worker {\n  perform = function( end,\n}")
      local ok, err = pcall(testing.app, { root = root })
      assert.is_false(ok)
      assert.matches(root .. "/workers/broken.lua:3: ", err, 1, true)
    end)

    it("refuses a script whose definition is bad, with file and line", function()
      script("bad.lua", 'return wh.worker {\n  args = { n = "int" },\n  perform = function() end,\n}')
      local ok, err = pcall(testing.app, { root = root })
      assert.is_false(ok)
      assert.matches(root .. '/workers/bad.lua:2: wh.worker: args.n: unknown type "int"', err, 1, true)
    end)

    it("refuses a file name that makes no class name, as the host does", function()
      script("9lives.lua", "return wh.worker { perform = function() end }")
      local ok, err = pcall(testing.app, { root = root })
      assert.is_false(ok, "testing.app accepted workers/9lives.lua, which the host refuses")
      assert.matches("cannot make a class name from the file name", err, 1, true)
    end)

    it("testing.worker makes an app of one inline definition", function()
      app = testing.worker(wh.worker { name = "Inline", perform = function() end })
      local _, ok = app:perform_later("Inline")
      assert.is_true(ok)
      assert.has_error(function() testing.worker({ perform = print }) end,
        "workerhost.testing.worker: expected a wh.worker definition")
    end)
  end)

  describe("app:perform_later", function()
    it("returns a 24-hex jid, true and nil when the job succeeds", function()
      script("ok_worker.lua", "return wh.worker { perform = function() end }")
      app = testing.app { root = root }
      local jid, ok, err = app:perform_later("OkWorker", {})
      assert.are.equal(24, #jid)
      assert.matches("^%x+$", jid)
      assert.is_true(ok)
      assert.is_nil(err)
      local jid2 = app:perform_later("OkWorker")
      assert.are_not.equal(jid, jid2)
    end)

    it("returns jid, false and the message with file:line when the job raises", function()
      script("boom.lua", BOOM)
      app = testing.app { root = root }
      local jid, ok, err = app:perform_later("Boom", { x = 3 })
      assert.matches("^" .. ("%x"):rep(24) .. "$", jid)
      assert.is_false(ok)
      assert.are.equal(root .. "/workers/boom.lua:5: boom 3", err)
    end)

    it("reports an error object that is not a string", function()
      script("obj.lua", "return wh.worker { perform = function() error({ code = 1 }) end }")
      app = testing.app { root = root }
      local _, ok, err = app:perform_later("Obj")
      assert.is_false(ok)
      assert.are.equal("(error object is a table value)", err)
    end)

    it("refuses arguments before perform runs, raising with the path", function()
      script("boom.lua", BOOM)
      app = testing.app { root = root }
      assert.has_error(function() app:perform_later("Boom", { x = "3" }) end,
        "wh.enqueue: Boom: args.x: expected integer, got string")
    end)

    it("wh.enqueue_bulk checks every job first, then runs each at once and returns their jids", function()
      script("seen.lua", table.concat({
        "local seen = package.loaded.bulk_seen or {}",
        "package.loaded.bulk_seen = seen",
        'return wh.worker { args = { x = "integer" }, perform = function(args) seen[#seen + 1] = args.x end }',
      }, "\n"))
      package.loaded.bulk_seen = nil
      app = testing.app { root = root }
      local jids = wh.enqueue_bulk("Seen", { { x = 1 }, { x = 2 }, { x = 3 } })
      assert.are.equal(3, #jids)
      assert.matches("^" .. ("%x"):rep(24) .. "$", jids[3])
      assert.are.same({ 1, 2, 3 }, package.loaded.bulk_seen)
      assert.has_error(function() wh.enqueue_bulk("Seen", { { x = 4 }, { x = "five" } }) end,
        "wh.enqueue_bulk: Seen: job 2 of 2: args.x: expected integer, got string")
      assert.are.same({ 1, 2, 3 }, package.loaded.bulk_seen, "a refused bulk runs nothing")
      assert.are.same({}, wh.enqueue_bulk("Seen", {}))
      package.loaded.bulk_seen = nil
    end)

    it("raises for an unknown class", function()
      script("boom.lua", BOOM)
      app = testing.app { root = root }
      assert.has_error(function() app:perform_later("Nope", {}) end,
        'wh.enqueue: unknown worker class "Nope"')
    end)

    it("checks the options", function()
      script("ok_worker.lua", "return wh.worker { perform = function() end }")
      app = testing.app { root = root }
      assert.has_error(function() app:perform_later("OkWorker", {}, { delay = 1 }) end,
        'wh.enqueue: unknown option "delay" (known: queue, in, at, retry)')
      assert.has_error(function() app:perform_later("OkWorker", {}, { ["in"] = 1, at = 2 }) end,
        "wh.enqueue: give either in or at, not both")
      assert.has_error(function() app:perform_later("OkWorker", {}, { ["in"] = -1 }) end,
        "wh.enqueue: option in must be a number of seconds >= 0")
      assert.has_error(function() app:perform_later("OkWorker", {}, { retry = "x" }) end,
        "wh.enqueue: option retry must be an integer >= 0, true or false")
    end)

    it("runs a job with in/at at once", function()
      local ran = 0
      app = testing.worker(wh.worker { name = "Later", perform = function() ran = ran + 1 end })
      app:perform_later("Later", {}, { ["in"] = 3600 })
      app:perform_later("Later", {}, { at = os.time() + 3600 })
      assert.are.equal(2, ran)
    end)

    it("passes the job table: jid, class, queue, created_at, enqueued_at", function()
      local seen
      app = testing.worker(wh.worker { name = "JobInfo", queue = "low",
        perform = function(_, job) seen = job end })
      local before = os.time()
      local jid = app:perform_later("JobInfo")
      assert.are.equal(jid, seen.jid)
      assert.are.equal("JobInfo", seen.class)
      assert.are.equal("low", seen.queue)
      assert.are.equal("number", type(seen.created_at))
      assert.are.equal("number", type(seen.enqueued_at))
      assert.is_true(seen.created_at >= before - 1 and seen.created_at <= os.time() + 1)
      assert.is_true(seen.enqueued_at >= seen.created_at)
      -- the queue option wins over the worker's queue
      app:perform_later("JobInfo", {}, { queue = "urgent" })
      assert.are.equal("urgent", seen.queue)
    end)
  end)

  describe("nested wh.enqueue inside perform", function()
    local OUTER = table.concat({
      "return wh.worker {",
      '  args = { x = "any" },',
      "  perform = function(args, job)",
      '    local jid, ok, err = wh.enqueue("Boom", { x = args.x })',
      "    RESULTS[#RESULTS + 1] = { jid = jid, ok = ok, err = err, outer = job.jid }",
      "  end,",
      "}",
    }, "\n")

    before_each(function() _G.RESULTS = {} end)
    after_each(function() _G.RESULTS = nil end)

    it("runs the nested job at once and returns jid, ok, err; a failing one does not raise", function()
      script("boom.lua", BOOM)
      script("outer_worker.lua", OUTER)
      app = testing.app { root = root }
      local jid, ok, err = app:perform_later("OuterWorker", { x = 7 })
      assert.is_true(ok, err)
      local r = RESULTS[1]
      assert.are.equal(jid, r.outer)
      assert.matches("^" .. ("%x"):rep(24) .. "$", r.jid)
      assert.are_not.equal(jid, r.jid)
      assert.is_false(r.ok)
      assert.are.equal(root .. "/workers/boom.lua:5: boom 7", r.err)
    end)

    it("a nested job that succeeds returns jid, true, nil", function()
      script("fine.lua", 'return wh.worker { name = "Boom", args = { x = "any" }, perform = function() end }')
      script("outer_worker.lua", OUTER)
      app = testing.app { root = root }
      local _, ok, err = app:perform_later("OuterWorker", { x = 7 })
      assert.is_true(ok, err)
      assert.is_true(RESULTS[1].ok)
      assert.is_nil(RESULTS[1].err)
    end)

    it("nested arguments refused by the check raise in the caller, with its file and line", function()
      script("boom.lua", BOOM)
      script("outer_worker.lua", OUTER)
      app = testing.app { root = root }
      local _, ok, err = app:perform_later("OuterWorker", { x = "seven" })
      assert.is_false(ok)
      assert.are.equal(root .. "/workers/outer_worker.lua:5: wh.enqueue: Boom: args.x: expected integer, got string", err)
      assert.are.equal(0, #RESULTS)
    end)

    it("a nested job sees its own job table, and the outer job gets its own back", function()
      local seen = {}
      local inner = wh.worker { name = "Inner", queue = "in_q", perform = function(_, job) seen.inner = job end }
      app = testing.worker(wh.worker { name = "Outer", perform = function(_, job)
        seen.before = job.jid
        wh.enqueue("Inner", {})
        seen.after = job.jid
      end })
      app.workers.Inner = inner
      local jid = app:perform_later("Outer")
      assert.are.equal("Inner", seen.inner.class)
      assert.are.equal("in_q", seen.inner.queue)
      assert.are_not.equal(jid, seen.inner.jid)
      assert.are.equal(jid, seen.before)
      assert.are.equal(jid, seen.after)
    end)
  end)

  describe("spies and stubs", function()
    it("spy.on(wh.log, \"info\") sees what a worker logs", function()
      script("log_worker.lua", 'return wh.worker { args = { n = "integer" }, perform = function(a) wh.log.info("hello", a.n) end }')
      app = testing.app { root = root }
      local s = spy.on(wh.log, "info")
      finally(function() s:revert() end)
      app:perform_later("LogWorker", { n = 3 })
      assert.spy(s).was.called(1)
      assert.spy(s).was.called_with("hello", 3)
    end)

    it("a stub replaces a module function the worker calls", function()
      local gateway = { charge = function() return true end }
      package.loaded["fake_gateway"] = gateway
      finally(function() package.loaded["fake_gateway"] = nil end)
      script("charge_worker.lua", table.concat({
        'local gateway = require "fake_gateway"',
        "return wh.worker {",
        '  args = { account = "string", cents = "integer" },',
        "  perform = function(args)",
        "    local ok, why = gateway.charge(args.account, args.cents)",
        '    if not ok then error("refused: " .. why, 0) end',
        "  end,",
        "}",
      }, "\n"))
      app = testing.app { root = root }
      local st = stub(gateway, "charge").returns(false, "card declined")
      finally(function() st:revert() end)
      local _, ok, err = app:perform_later("ChargeWorker", { account = "acc-1", cents = 500 })
      assert.is_false(ok)
      assert.are.equal("refused: card declined", err)
      assert.stub(st).was.called_with("acc-1", 500)
    end)

    it("the worker's module table is the spec's: stubbing wh.log.warn silences and records", function()
      app = testing.worker(wh.worker { name = "Warn", perform = function() wh.log.warn("careful") end })
      local st = stub(wh.log, "warn")
      finally(function() st:revert() end)
      app:perform_later("Warn")
      assert.stub(st).was.called_with("careful")
    end)
  end)

  describe("leaves busted alone", function()
    it("does not change os.exit, package.path, package.cpath or other globals", function()
      local globals = {}
      for k in pairs(_G) do globals[k] = true end
      script("ok_worker.lua", "return wh.worker { perform = function() end }")
      app = testing.app { root = root }
      app:perform_later("OkWorker")
      app:close()
      app = nil
      assert.are.equal(saved.exit, os.exit)
      assert.are.equal(saved.path, package.path)
      assert.are.equal(saved.cpath, package.cpath)
      assert.are.equal(saved.require, require)
      assert.are.equal(saved.error, error)
      assert.are.equal(saved.pcall, pcall)
      local added = {}
      for k in pairs(_G) do if not globals[k] then added[#added + 1] = tostring(k) end end
      assert.are.same({}, added)
    end)
  end)

  describe("app:close()", function()
    it("makes wh.enqueue fail with \"no host\"", function()
      app = testing.worker(wh.worker { name = "W", perform = function() end })
      app:close()
      app = nil
      assert.has_error(function() wh.enqueue("W", {}) end,
        'wh.enqueue: no host runs this Lua state (in specs, use require("workerhost.testing").app())')
    end)
  end)

  describe("require", function()
    it("require \"workerhost.testing\" works on its own in a fresh lua5.4", function()
      -- a spec that starts with `local testing = require "workerhost.testing"`
      -- (as the generated spec and the README's example do)
      local out, status = H.sh("cd " .. H.q(root) .. " && LUA_CPATH=" .. H.q(H.absolute_cpath())
        .. " timeout 30 lua5.4 -e " .. H.q('local testing = require "workerhost.testing"; print(type(testing.app))'))
      assert.are.equal(0, status, out)
      assert.are.equal("function\n", out)
    end)

    it("require \"workerhost\" gives the version", function()
      assert.are.equal("0.1.0", wh.version)
    end)
  end)
end)
