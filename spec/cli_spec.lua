-- The workerhost command, end to end, as a user runs it: against app roots
-- made in temp dirs, reading its output and exit status.
local cjson = require "cjson"
local H = require "spec.helpers"

local HEX24 = "^" .. ("%x"):rep(24) .. "$"

local function lines(s)
  local out = {}
  for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

-- A worker that logs what it received, so a spec can read what perform saw.
local ECHO_WORKER = [[
local wh = require "workerhost"
return wh.worker {
  args = { i = "integer?", n = "number?", a = "any?" },
  perform = function(args)
    wh.log.warn(("i=%s:%s n=%s:%s"):format(math.type(args.i), tostring(args.i), math.type(args.n), tostring(args.n)))
  end,
}
]]

local NO_ARGS_WORKER = [[
local wh = require "workerhost"
return wh.worker {
  perform = function(args) wh.log.warn("no args: " .. tostring(next(args))) end,
}
]]

local EXIT_WORKER = [[
local wh = require "workerhost"
return wh.worker {
  perform = function() os.exit(3) end,
}
]]

describe("workerhost command", function()
  local root

  -- An app root with the example workers, the given extra files and
  -- config/test.yaml (ForegroundBlocking); extra config lines under workers:.
  local function make_root(files, config_extra)
    root = H.app_root(files, config_extra)
    H.copy_example_workers(root)
    return root
  end

  local function run(words, opts)
    opts = opts or {}
    opts.cwd = opts.cwd or root
    return H.run(words, opts)
  end

  local function run3(words, opts)
    opts = opts or {}
    opts.cwd = opts.cwd or root
    return H.run3(words, opts)
  end

  after_each(function()
    if root then H.rmdir(root) end
    root = nil
  end)

  it("finds the binary", function()
    local f = io.open(H.bin, "rb")
    assert.is_not_nil(f, "no workerhost binary at " .. H.bin .. " (set WORKERHOST_BIN)")
    f:close()
  end)

  describe("check", function()
    it("prints the table of workers: worker, queue, retry, timeout, file, args; exit 0", function()
      make_root({
        ["workers/quiet_worker.lua"] = 'local wh = require "workerhost"\n'
          .. 'return wh.worker { retry = false, timeout = 2.5, perform = function() end }\n',
      }, "  timeout: 45\n")
      local out, status = run { "check", "--env", "test" }
      assert.are.equal(0, status, out)
      local l = lines(out)
      assert.are.equal(root .. "/config/test.yaml: ForegroundBlocking mode, 5 workers from " .. root .. "/workers", l[1])
      assert.matches("^WORKER%s+QUEUE%s+RETRY%s+TIMEOUT%s+FILE%s+ARGS$", l[2])
      assert.matches("^DownloadWorker%s+default%s+5%s+30s%s+workers/download_worker%.lua%s+"
        .. "{count: integer%?, user_guid: string}$", l[3])
      assert.matches("^NotifyWorker%s+default%s+25%s+45s%s+workers/notify_worker%.lua%s+"
        .. '{channel: enum%("email", "sms", "push"%), recipients: array%({user_guid: string, wants_report: boolean = false}, '
        .. "min_items=1, max_items=100%), subject: string%(max_len=200%)%?}$", l[4])
      assert.matches("^PaymentWorker%s+critical%s+3%s+45s%s+workers/payment_worker%.lua%s+"
        .. '{account: string%(min_len=1, max_len=64%), cents: integer%(min=1%), currency: enum%("EUR", "USD", "GBP"%) = "EUR"}$', l[5])
      assert.matches("^QuietWorker%s+default%s+false%s+2%.5s%s+workers/quiet_worker%.lua%s+none$", l[6])
      assert.matches("^ResizeImageWorker%s+media%s+25%s+45s%s+workers/resize_image_worker%.lua%s+"
        .. "%(string, integer%(min=1, max=8192%), integer%(min=1, max=8192%)%?%)$", l[7])
      assert.are.equal(7, #l)
    end)

    it("lines the columns up", function()
      make_root()
      local out = run { "check", "--env", "test" }
      local l = lines(out)
      local col = l[2]:find("QUEUE", 1, true)
      for i = 3, #l do
        local first_space = l[i]:find(" ", 1, true)
        assert.are.equal(col, (l[i]:find("%S", first_space)), "column QUEUE in " .. l[i])
      end
    end)

    local broken = {
      {
        what = "a syntax error",
        src = 'local wh = require "workerhost"\nreturn wh.worker {\n  perform = function( end,\n}\n',
        want = "workers/bad.lua:3: <name> or '...' expected near 'end'",
      },
      {
        what = "an error while defining",
        src = 'local wh = require "workerhost"\nlocal x = 1\nerror("nope")\n',
        want = "workers/bad.lua:3: nope",
      },
      {
        what = "a bad schema",
        src = 'local wh = require "workerhost"\n\nreturn wh.worker {\n  args = { n = "int" },\n  perform = function() end,\n}\n',
        want = 'workers/bad.lua:3: wh.worker: args.n: unknown type "int" (known: string, integer, number, boolean, any, '
          .. "each with an optional trailing ?, and the constructors in wh.types)",
      },
      {
        what = "a bad option",
        src = 'local wh = require "workerhost"\n\nreturn wh.worker { queue = 5, perform = function() end }\n',
        want = "workers/bad.lua:3: wh.worker: queue must be a non-empty string",
      },
      {
        what = "a missing perform",
        src = 'local wh = require "workerhost"\n\nreturn wh.worker { retry = 1 }\n',
        want = "workers/bad.lua:3: wh.worker: perform must be a function (it is nil)",
      },
      {
        what = "a script that returns no worker",
        src = "return 42\n",
        want = "workers/bad.lua: the script must return wh.worker{...}, got number",
      },
      {
        what = "a worker name defined twice",
        src = 'local wh = require "workerhost"\nreturn wh.worker { name = "DownloadWorker", perform = function() end }\n',
        want = "worker DownloadWorker is already defined in workers/bad.lua",
      },
    }
    for _, case in ipairs(broken) do
      it("exits 2 and names file:line for " .. case.what, function()
        make_root { ["workers/bad.lua"] = case.src }
        local out, status = run { "check", "--env", "test" }
        assert.are.equal(2, status, out)
        assert.matches(case.want, out, 1, true)
        assert.is_nil(out:find("WORKER", 1, true))
      end)
    end

    it("exits 2 for a file name that makes no class name", function()
      make_root { ["workers/9lives.lua"] = 'local wh = require "workerhost"\nreturn wh.worker { perform = function() end }\n' }
      local out, status = run { "check", "--env", "test" }
      assert.are.equal(2, status, out)
      assert.matches("workers/9lives.lua: cannot make a class name from the file name; set name = ...", out, 1, true)
    end)

    it("a broken script stops enqueue too (the host does not start)", function()
      make_root { ["workers/bad.lua"] = 'local wh = require "workerhost"\nreturn wh.worker { args = { n = "int" }, perform = print }\n' }
      local out, status = run { "enqueue", "DownloadWorker", '{"user_guid":"x"}', "--env", "test" }
      assert.are.equal(2, status, out)
      assert.matches("workers/bad.lua:2: wh.worker: args.n: unknown type", out, 1, true)
    end)

    it("exits 2 for an unexpected argument", function()
      make_root()
      local out, status = run { "check", "extra", "--env", "test" }
      assert.are.equal(2, status, out)
      assert.matches("unexpected argument extra", out, 1, true)
    end)
  end)

  describe("enqueue", function()
    before_each(function()
      make_root({
        ["workers/echo_worker.lua"] = ECHO_WORKER,
        ["workers/no_args_worker.lua"] = NO_ARGS_WORKER,
        ["workers/exit_worker.lua"] = EXIT_WORKER,
      }, "  max_payload_bytes: 1KB\n")
    end)

    local function enqueue(class, json, ...)
      return run3 { "enqueue", class, json, "--env", "test", ... }
    end

    it("performs the job: exit 0, the jid on stdout", function()
      local out, err, status = enqueue("DownloadWorker", '{"user_guid":"foo"}')
      assert.are.equal(0, status, err)
      local jid = out:match("^(%x+)\n$")
      assert.is_not_nil(jid, out)
      assert.matches(HEX24, jid)
      assert.matches("%[DownloadWorker jid=" .. jid .. "%] Sending payment report to user foo", err)
    end)

    it("performs positional jobs and nested jobs", function()
      local out, err, status = enqueue("ResizeImageWorker", '["https://x/a.png", 20]')
      assert.are.equal(0, status, err)
      assert.matches(HEX24, out:match("^(%S+)\n$"))
      assert.matches("resized https://x/a.png to 20x20", err, 1, true)
      out, err, status = enqueue("NotifyWorker",
        '{"channel":"sms","recipients":[{"user_guid":"u1","wants_report":true},{"user_guid":"u2"}]}')
      assert.are.equal(0, status, err)
      assert.matches("notify u1 via sms", err, 1, true)
      assert.matches("Sending payment report to user u1", err, 1, true)
      assert.is_nil(err:find("user u2", 1, true))
    end)

    it("holds a job's timeout when the job calls debug.sethook (exit 1, timed out)", function()
      -- what a profiler or a coverage library does by accident; on a coroutine too
      local cases = {
        "debug.sethook() while true do end",
        "debug.sethook(function() end, 'l') while true do end",
        "local co = coroutine.create(function() while true do end end) debug.sethook(co) coroutine.resume(co)",
      }
      for i, body in ipairs(cases) do
        H.write(root .. "/workers/hook_worker.lua",
          "local wh = require 'workerhost'\n" ..
          "return wh.worker { timeout = 1, perform = function() " .. body .. " end }\n")
        local _, err, status = run3({ "enqueue", "HookWorker", "{}", "--env", "test" }, { timeout = 20 })
        assert.are.equal(1, status, "case " .. i .. ": " .. err)
        assert.matches("timed out after 1 seconds", err, 1, true)
      end
    end)

    it("without ARGS_JSON sends {}", function()
      local out, err, status = run3 { "enqueue", "NoArgsWorker", "--env", "test" }
      assert.are.equal(0, status, err)
      assert.matches("no args: nil", err, 1, true)
      out, err, status = enqueue("NoArgsWorker", "[]")
      assert.are.equal(0, status, err)
      out, err, status = run3 { "enqueue", "DownloadWorker", "--env", "test" }
      assert.are.equal(3, status, err)
      assert.matches("DownloadWorker: args.user_guid: missing (expected string)", err, 1, true)
      assert.are.equal("", out)
    end)

    it("refuses arguments with exit 3 and the path, and does not perform", function()
      local cases = {
        { "DownloadWorker", '{"user_guid":42}', "DownloadWorker: args.user_guid: expected string, got integer" },
        { "DownloadWorker", '{"user_guid":"x","n":1}', "DownloadWorker: args.n: unknown field (known: count, user_guid)" },
        { "DownloadWorker", '["x"]', "DownloadWorker: args: expected an object of named arguments, got array" },
        { "ResizeImageWorker", '["u", 1.5]', "ResizeImageWorker: args[2]: expected integer(min=1, max=8192), got number 1.5" },
        { "ResizeImageWorker", '["u", 2.0]', "ResizeImageWorker: args[2]: expected integer(min=1, max=8192), got number 2.0" },
        { "ResizeImageWorker", '{"url":"u"}', "ResizeImageWorker: args: expected an array of positional arguments, got object" },
        { "NotifyWorker", '{"channel":"email","recipients":[{"user_guid":"a"},{"user_guid":1}]}',
          "NotifyWorker: args.recipients[2].user_guid: expected string, got integer" },
        { "NotifyWorker", '{"channel":"email","recipients":[{"user_guid":"a"},{}]}',
          "NotifyWorker: args.recipients[2].user_guid: missing (expected string)" },
        { "PaymentWorker", '{"account":"a","cents":5,"currency":"JPY"}',
          'PaymentWorker: args.currency: expected enum("EUR", "USD", "GBP") = "EUR", got "JPY"' },
        { "NoArgsWorker", '{"x":1}', "NoArgsWorker: args: expected no arguments ({} or []), got object" },
      }
      for _, c in ipairs(cases) do
        local out, err, status = enqueue(c[1], c[2])
        assert.are.equal(3, status, c[2] .. ": " .. err)
        assert.are.equal("workerhost: " .. c[3] .. "\n", err)
        assert.are.equal("", out)
      end
    end)

    it("a job that raises: exit 1, the error with file:line, the jid on stdout", function()
      local out, err, status = enqueue("PaymentWorker", '{"account":"blocked-1","cents":5}')
      assert.are.equal(1, status, err)
      assert.matches(HEX24, out:match("^(%S+)\n$"))
      assert.matches("workerhost: workers/payment_worker%.lua:%d+: payment gateway refused account blocked%-1\n$", err)
    end)

    it("os.exit inside a job fails the job (exit 1), not the host", function()
      local _, err, status = enqueue("ExitWorker", "{}")
      assert.are.equal(1, status, err)
      assert.matches("os.exit(3) called inside a job; the host keeps running", err, 1, true)
    end)

    it("an unknown class: exit 4", function()
      local out, err, status = enqueue("NopeWorker", "{}")
      assert.are.equal(4, status, err)
      assert.matches('unknown worker class "NopeWorker"', err, 1, true)
      assert.are.equal("", out)
    end)

    it("malformed ARGS_JSON: exit 3, invalid JSON", function()
      for _, bad in ipairs { '{"user_guid":', "{'user_guid':'x'}", '{"user_guid":"x"} trailing', "", "nul", "{user_guid:1}" } do
        local out, err, status = enqueue("DownloadWorker", bad)
        assert.are.equal(3, status, bad .. ": " .. err)
        assert.matches("workerhost: invalid JSON", err, 1, true)
        assert.are.equal("", out)
      end
    end)

    it("a payload over workers.max_payload_bytes is refused (exit 3)", function()
      local big = '{"user_guid":"' .. ("a"):rep(2000) .. '"}'
      local _, err, status = enqueue("DownloadWorker", big)
      assert.are.equal(3, status, err)
      assert.matches("over the limit of 1000", err, 1, true)
      -- and one under it passes
      local _, err2, status2 = enqueue("DownloadWorker", '{"user_guid":"' .. ("a"):rep(900) .. '"}')
      assert.are.equal(0, status2, err2)
    end)

    it("deep nesting is refused with a message about nesting (exit 3)", function()
      local deep = '{"a":' .. ("["):rep(200) .. ("]"):rep(200) .. "}"
      local _, err, status = enqueue("EchoWorker", deep)
      assert.are.equal(3, status, err)
      assert.matches("nesting deeper than 64", err, 1, true)
      local ok = '{"a":' .. ("["):rep(20) .. ("]"):rep(20) .. "}"
      local _, err2, status2 = enqueue("EchoWorker", ok)
      assert.are.equal(0, status2, err2)
    end)

    it("invalid UTF-8, lone surrogates and duplicate keys are refused (exit 3)", function()
      local cases = {
        { '{"user_guid":"ab\xff"}', "invalid UTF-8" },
        { '{"user_guid":"\xc0\xaf"}', "invalid UTF-8" },
        { '{"user_guid":"\xed\xa0\x80"}', "invalid UTF-8" },
        { '{"user_guid":"\\ud800"}', "lone surrogate" },
        { '{"user_guid":"a","user_guid":"b"}', 'duplicate key "user_guid"' },
      }
      for _, c in ipairs(cases) do
        local _, err, status = enqueue("DownloadWorker", c[1])
        assert.are.equal(3, status, err)
        assert.matches(c[2], err, 1, true)
      end
      local _, err, status = enqueue("DownloadWorker", '{"user_guid":"h\\u00e9llo \\ud83d\\ude00 日本"}')
      assert.are.equal(0, status, err)
      assert.matches("user héllo 😀 日本", err, 1, true)
    end)

    it("int64 edges reach perform exactly; integers outside int64 are refused", function()
      local _, err, status = enqueue("EchoWorker", '{"i":9223372036854775807,"n":-9223372036854775808}')
      assert.are.equal(0, status, err)
      assert.matches("i=integer:9223372036854775807 n=integer:-9223372036854775808", err, 1, true)
      _, err, status = enqueue("EchoWorker", '{"i":-9223372036854775808,"n":1.5}')
      assert.are.equal(0, status, err)
      assert.matches("i=integer:-9223372036854775808 n=float:1.5", err, 1, true)
      _, err, status = enqueue("EchoWorker", '{"i":9223372036854775808}')
      assert.are.equal(3, status, err)
      assert.matches("EchoWorker: args.i: expected integer?, got an integer outside the 64-bit range", err, 1, true)
      _, err, status = enqueue("EchoWorker", '{"i":-9223372036854775809}')
      assert.are.equal(3, status, err)
      assert.matches("outside the 64-bit range", err, 1, true)
      _, err, status = enqueue("EchoWorker", '{"i":1.0}')
      assert.are.equal(3, status, err)
      assert.matches("EchoWorker: args.i: expected integer?, got number 1.0", err, 1, true)
      _, err, status = enqueue("EchoWorker", '{"i":1e3}')
      assert.are.equal(3, status, err)
      _, err, status = enqueue("EchoWorker", '{"n":1e3}')
      assert.are.equal(0, status, err)
      assert.matches("n=float:1000.0", err, 1, true)
    end)

    it("a very long string under the payload limit goes through", function()
      H.write(root .. "/config/big.yaml", "workers:\n  mode: ForegroundBlocking\n  max_payload_bytes: 4MiB\n")
      -- (one command-line word may hold at most 128 KiB on Linux)
      local long = ("x"):rep(100000)
      local _, err, status = run3 { "enqueue", "DownloadWorker", '{"user_guid":"' .. long .. '"}', "--env", "big" }
      assert.are.equal(0, status, err:sub(1, 300))
      assert.matches("Sending payment report to user xxxx", err, 1, true)
    end)

    it("usage errors exit 2", function()
      local _, err, status = run3 { "enqueue", "--env", "test" }
      assert.are.equal(2, status, err)
      assert.matches("missing CLASS", err, 1, true)
      _, err, status = enqueue("DownloadWorker", '{"user_guid":"x"}', "--retry", "sometimes")
      assert.are.equal(2, status, err)
      _, err, status = enqueue("DownloadWorker", '{"user_guid":"x"}', "--bogus")
      assert.are.equal(2, status, err)
      assert.matches("unknown option --bogus", err, 1, true)
    end)

    it("accepts --queue, --in and --retry (the job runs now in ForegroundBlocking)", function()
      local out, err, status = enqueue("DownloadWorker", '{"user_guid":"x"}', "--queue", "other", "--in", "3600", "--retry", "false")
      assert.are.equal(0, status, err)
      assert.matches(HEX24, out:match("^(%S+)\n$"))
      assert.matches("Sending payment report to user x", err, 1, true)
    end)
  end)

  describe("global options", function()
    before_each(function() make_root() end)

    it("--root before or after the subcommand, from another directory", function()
      local out, status = H.run({ "--root", root, "check", "--env", "test" }, { cwd = "/" })
      assert.are.equal(0, status, out)
      assert.matches("DownloadWorker", out, 1, true)
      out, status = H.run({ "check", "--env", "test", "--root", root }, { cwd = "/" })
      assert.are.equal(0, status, out)
      assert.matches("DownloadWorker", out, 1, true)
      out, status = H.run({ "enqueue", "DownloadWorker", '{"user_guid":"x"}', "--root=" .. root, "--env=test" }, { cwd = "/" })
      assert.are.equal(0, status, out)
    end)

    it("--env before or after the subcommand", function()
      H.write(root .. "/config/other.yaml", "workers:\n  mode: ForegroundBlocking\n  scripts: workers\n")
      local out, status = run { "--env", "other", "check" }
      assert.are.equal(0, status, out)
      assert.matches("^" .. root .. "/config/other%.yaml: ForegroundBlocking mode", out)
      out, status = run { "check", "--env", "other" }
      assert.are.equal(0, status, out)
      assert.matches("^" .. root .. "/config/other%.yaml: ", out)
    end)

    it("--config FILE before or after the subcommand; paths in it stay relative to the root", function()
      H.write(root .. "/elsewhere/my.yaml", "workers:\n  mode: ForegroundBlocking\n  scripts: workers\n")
      local out, status = run { "--config", "elsewhere/my.yaml", "check" }
      assert.are.equal(0, status, out)
      assert.matches("elsewhere/my.yaml: ForegroundBlocking mode, 4 workers from " .. root .. "/workers", out, 1, true)
      out, status = H.run({ "check", "--root", root, "--config", root .. "/elsewhere/my.yaml" }, { cwd = "/" })
      assert.are.equal(0, status, out)
      assert.matches("4 workers from " .. root .. "/workers", out, 1, true)
    end)

    it("WORKERHOST_ENV picks the environment; --env wins over it", function()
      H.write(root .. "/config/other.yaml", "workers:\n  mode: ForegroundBlocking\n")
      local out, status = run({ "check" }, { env = { WORKERHOST_ENV = "test" } })
      assert.are.equal(0, status, out)
      assert.matches("^" .. root .. "/config/test%.yaml: ", out)
      out, status = run({ "check", "--env", "other" }, { env = { WORKERHOST_ENV = "test" } })
      assert.are.equal(0, status, out)
      assert.matches("^" .. root .. "/config/other%.yaml: ", out)
    end)

    it("without --env or WORKERHOST_ENV the environment is development", function()
      local out, status = run { "check" }
      assert.are.equal(2, status, out)
      assert.matches(root .. "/config/development.yaml: cannot read", out, 1, true)
    end)

    it("an option without its value is a usage error", function()
      local out, status = run { "check", "--env" }
      assert.are.equal(2, status, out)
      assert.matches("--env needs a value", out, 1, true)
    end)

    it("an environment name with a slash is refused", function()
      local out, status = run { "check", "--env", "../test" }
      assert.are.equal(2, status, out)
      assert.matches('invalid environment name "../test"', out, 1, true)
    end)
  end)

  describe("a bad config", function()
    before_each(function() make_root() end)

    local function check_with(yaml)
      H.write(root .. "/config/bad.yaml", yaml)
      return run { "check", "--env", "bad" }
    end

    it("an unknown key: exit 2, file:line:col and the key path", function()
      local out, status = check_with("workers:\n  mode: ForegroundBlocking\n  bogus: 1\n")
      assert.are.equal(2, status, out)
      assert.matches("workerhost: " .. root .. "/config/bad.yaml:3:3: workers.bogus: unknown key", out, 1, true)
    end)

    it("an unknown section", function()
      local out, status = check_with("workers:\n  mode: ForegroundBlocking\nqueues:\n  - default\n")
      assert.are.equal(2, status, out)
      assert.matches(root .. '/config/bad.yaml:3:1: unknown section "queues" (known: workers, queue, logger)', out, 1, true)
    end)

    it("a wrong type: exit 2, file:line:col and the key path", function()
      local out, status = check_with("workers:\n  mode: ForegroundBlocking\n  concurrency: four\n")
      assert.are.equal(2, status, out)
      assert.matches(root .. '/config/bad.yaml:3:16: workers.concurrency: expected an integer from 1 to 1024, got "four"', out, 1, true)
    end)

    it("a bad value", function()
      local out, status = check_with("workers:\n  mode: Background\n")
      assert.are.equal(2, status, out)
      assert.matches(root .. "/config/bad.yaml:2:9: workers.mode: ", out, 1, true)
      out, status = check_with("logger:\n  level: loud\n")
      assert.are.equal(2, status, out)
      assert.matches(root .. "/config/bad.yaml:2:10: logger.level: ", out, 1, true)
    end)

    it("a file given with --config, with its path as given", function()
      H.write(root .. "/bad.yaml", "workers:\n  mode: ForegroundBlocking\n  timeout: soon\n")
      local out, status = run { "check", "--config", "bad.yaml" }
      assert.are.equal(2, status, out)
      assert.matches("bad.yaml:3:12: workers.timeout: ", out, 1, true)
    end)

    it("a missing file: exit 2, naming it", function()
      local out, status = run { "check", "--env", "nowhere" }
      assert.are.equal(2, status, out)
      assert.matches(root .. "/config/nowhere.yaml: cannot read", out, 1, true)
      out, status = run { "check", "--config", root .. "/nope.yaml" }
      assert.are.equal(2, status, out)
      assert.matches(root .. "/nope.yaml: cannot read", out, 1, true)
    end)

    it("a bad config stops enqueue and run too", function()
      -- (ForegroundBlocking, so that `run` cannot start if the key were accepted)
      H.write(root .. "/config/bad.yaml", "workers:\n  mode: ForegroundBlocking\n  bogus: 1\n")
      local out, status = run { "enqueue", "DownloadWorker", '{"user_guid":"x"}', "--env", "bad" }
      assert.are.equal(2, status, out)
      assert.matches("workers.bogus: unknown key", out, 1, true)
      out, status = run { "run", "--env", "bad" }
      assert.are.equal(2, status, out)
      assert.matches("workers.bogus: unknown key", out, 1, true)
    end)
  end)

  describe("run", function()
    it("refuses ForegroundBlocking with a clear message (exit 2)", function()
      make_root()
      local out, status = run { "run", "--env", "test" }
      assert.are.equal(2, status, out)
      assert.matches("workerhost run: workers.mode is ForegroundBlocking in " .. root .. "/config/test.yaml: "
        .. "there is nothing to run", out, 1, true)
    end)
  end)

  describe("generate worker", function()
    before_each(function()
      root = H.app_root()
    end)

    it("writes workers/NAME.lua and spec/workers/NAME_spec.lua", function()
      local out, status = run { "generate", "worker", "report_worker", "--env", "test" }
      assert.are.equal(0, status, out)
      assert.matches("created " .. root .. "/workers/report_worker.lua (worker ReportWorker)", out, 1, true)
      assert.matches("created " .. root .. "/spec/workers/report_worker_spec.lua", out, 1, true)
      assert.is_true(H.exists(root .. "/workers/report_worker.lua"))
      assert.is_true(H.exists(root .. "/spec/workers/report_worker_spec.lua"))
      -- the new worker loads and runs
      out, status = run { "check", "--env", "test" }
      assert.are.equal(0, status, out)
      assert.matches("ReportWorker%s+default%s+25%s+30s%s+workers/report_worker%.lua%s+{user_guid: string}", out)
      out, status = run { "enqueue", "ReportWorker", '{"user_guid":"u1"}', "--env", "test" }
      assert.are.equal(0, status, out)
      assert.matches("ReportWorker performing for user u1", out, 1, true)
    end)

    it("takes a CamelCase name", function()
      local out, status = run { "generate", "worker", "ReportWorker", "--env", "test" }
      assert.are.equal(0, status, out)
      assert.is_true(H.exists(root .. "/workers/report_worker.lua"))
    end)

    it("refuses to overwrite (exit 2) and leaves the files alone", function()
      local _, status = run { "generate", "worker", "report_worker", "--env", "test" }
      assert.are.equal(0, status)
      H.write(root .. "/workers/report_worker.lua", "-- mine\n")
      local out
      out, status = run { "generate", "worker", "report_worker", "--env", "test" }
      assert.are.equal(2, status, out)
      assert.matches("already exists; not overwriting", out, 1, true)
      assert.are.equal("-- mine\n", H.read(root .. "/workers/report_worker.lua"))
      -- the spec alone existing is refused too
      os.remove(root .. "/workers/report_worker.lua")
      out, status = run { "generate", "worker", "report_worker", "--env", "test" }
      assert.are.equal(2, status, out)
      assert.matches("spec/workers/report_worker_spec.lua already exists", out, 1, true)
      assert.is_false(H.exists(root .. "/workers/report_worker.lua"))
    end)

    it("refuses a bad name (exit 2)", function()
      for _, bad in ipairs { "1report", "report-worker", "../x" } do
        local out, status = run { "generate", "worker", bad, "--env", "test" }
        assert.are.equal(2, status, out)
      end
      local out, status = run { "generate", "thing", "x", "--env", "test" }
      assert.are.equal(2, status, out)
    end)

    it("the generated spec passes when run with busted", function()
      local out, status = run { "generate", "worker", "report_worker", "--env", "test" }
      assert.are.equal(0, status, out)
      out, status = H.sh("cd " .. H.q(root) .. " && LUA_CPATH=" .. H.q(H.absolute_cpath())
        .. " timeout 60 busted --lua=lua5.4 --output=plainTerminal spec")
      assert.are.equal(0, status, out)
      assert.matches("2 successes / 0 failures / 0 errors", out, 1, true)
    end)
  end)

  describe("version and help", function()
    it("version prints workerhost 0.1.0", function()
      local out, err, status = H.run3 { "version" }
      assert.are.equal(0, status, err)
      assert.matches("^workerhost 0%.1%.0 %(Lua 5%.4", out)
    end)

    it("--help on each command exits 0 with its usage", function()
      for _, cmd in ipairs { "run", "enqueue", "check", "generate", "version" } do
        local out, err, status = H.run3 { cmd, "--help" }
        assert.are.equal(0, status, cmd .. ": " .. err)
        assert.matches("^usage: workerhost " .. cmd, out)
      end
      local out, _, status = H.run3 { "--help" }
      assert.are.equal(0, status)
      assert.matches("^usage: workerhost ", out)
      assert.matches("exit status: 0 success, 1 the job failed", out, 1, true)
    end)

    it("--help does not need a config", function()
      local out, status = H.run({ "enqueue", "--help" }, { cwd = "/" })
      assert.are.equal(0, status, out)
    end)

    it("no command or an unknown one is a usage error (exit 2)", function()
      local out, status = H.run {}
      assert.are.equal(2, status, out)
      assert.matches("usage: workerhost", out, 1, true)
      out, status = H.run { "frobnicate" }
      assert.are.equal(2, status, out)
      assert.matches("unknown command frobnicate", out, 1, true)
    end)
  end)

  describe("--log-format", function()
    before_each(function() make_root() end)

    it("json makes every log line a JSON object with ts, level, worker, jid, msg", function()
      local out, err, status = run3 { "--log-format", "json", "enqueue", "DownloadWorker", '{"user_guid":"foo"}', "--env", "test" }
      assert.are.equal(0, status, err)
      local jid = out:match("^(%x+)\n$")
      local l = lines(err)
      assert.is_true(#l >= 1, "no log lines")
      local seen = false
      for _, line in ipairs(l) do
        local ok, obj = pcall(cjson.decode, line)
        assert.is_true(ok, "not JSON: " .. line)
        assert.are.equal("table", type(obj))
        assert.are.equal("string", type(obj.ts))
        assert.are.equal("string", type(obj.level))
        assert.are.equal("string", type(obj.msg))
        if obj.msg:find("Sending payment report to user foo", 1, true) then
          seen = true
          assert.are.equal("info", obj.level)
          assert.are.equal("DownloadWorker", obj.worker)
          assert.are.equal(jid, obj.jid)
        end
      end
      assert.is_true(seen, err)
    end)

    it("json after the subcommand, and for errors too", function()
      local _, err, status = run3 { "enqueue", "PaymentWorker", '{"account":"blocked","cents":1}', "--env", "test", "--log-format=json" }
      assert.are.equal(1, status, err)
      local found = false
      for _, line in ipairs(lines(err)) do
        local ok, obj = pcall(cjson.decode, line)
        if ok and type(obj) == "table" and obj.level == "warn" then
          found = true
          assert.are.equal("PaymentWorker", obj.worker)
          assert.matches("payment gateway refused account blocked", obj.msg, 1, true)
        end
      end
      assert.is_true(found, err)
    end)

    it("text is the default, tagged with worker and jid", function()
      local out, err, status = run3 { "enqueue", "DownloadWorker", '{"user_guid":"foo"}', "--env", "test" }
      assert.are.equal(0, status, err)
      local jid = out:match("^(%x+)\n$")
      local found = false
      for _, line in ipairs(lines(err)) do
        if line:match("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z INFO  %[DownloadWorker jid=" .. jid .. "%] Sending payment report to user foo") then
          found = true
        end
      end
      assert.is_true(found, err)
    end)

    it("refuses an unknown format (exit 2)", function()
      local out, status = run { "--log-format", "xml", "check", "--env", "test" }
      assert.are.equal(2, status, out)
      assert.matches("--log-format must be text or json, not xml", out, 1, true)
    end)
  end)
end)

-- faults #12 and #13: what the command shows of the Redis password, and what
-- a job can still read of it.
describe("workerhost command and the Redis password", function()
  local root
  after_each(function() if root then H.rmdir(root) end root = nil end)

  local function app(mode, uri, files)
    root = H.tmpdir()
    H.write(root .. "/config/test.yaml",
      "workers:\n  mode: " .. mode .. "\n  concurrency: 2\nqueue:\n  uri: " .. uri .. "\nlogger:\n  level: info\n")
    H.mkdir(root .. "/workers")
    for path, text in pairs(files or {}) do H.write(root .. "/" .. path, text) end
    H.copy_example_workers(root)
    return root
  end

  it("never shows it in an error about a malformed queue.uri from ${REDIS_URL}", function()
    local urls = {
      "redis://:s3cret@host:notaport/0", "redis://u:s3cret@[::1", "redis://u:s3cret%zz@host",
      "rediss://:s3cret@host", "redis://:s3cret@", "redis://:s3cret@host?x=1",
      "http://:s3cret@host", "redis:/:s3cret@host", "s3cret@host", "unix://:s3cret@sock",
    }
    app("BackgroundQueue", "${REDIS_URL}")
    for _, url in ipairs(urls) do
      for _, words in ipairs { { "check" }, { "stats" }, { "enqueue", "DownloadWorker", '{"user_guid":"x"}' },
                               { "run" } } do
        table.insert(words, 1, "--env")
        table.insert(words, 2, "test")
        local out, err, status = H.run3(words, { cwd = root, env = { REDIS_URL = url }, timeout = 10 })
        assert.are.equal(2, status, url .. " " .. words[3] .. ": " .. out .. err)
        assert.is_nil(err:find("s3cret", 1, true), url .. " " .. words[3] .. ": " .. err)
        assert.is_nil(out:find("s3cret", 1, true), url .. " " .. words[3] .. ": " .. out)
      end
    end
  end)

  local ENV_WORKER = [[
local wh = require "workerhost"
return wh.worker {
  perform = function()
    local f = io.open("/proc/self/environ", "rb")
    local environ = "unreadable"
    if f then
      environ = tostring(f:read("a"):find("REDIS_URL=", 1, true) ~= nil)
      f:close()
    end
    wh.log.warn(("getenv: REDIS_URL=%s REDIS_PW=%s WH_OTHER=%s; initial environ has REDIS_URL: %s"):format(
      tostring(os.getenv("REDIS_URL")), tostring(os.getenv("REDIS_PW")), tostring(os.getenv("WH_OTHER")),
      environ))
  end,
}
]]

  -- The kernel's copy of the initial environment keeps the variables: root
  -- can still read it; another user cannot, since the host is not dumpable.
  local p = io.popen("id -u")
  local environ_shows = tonumber(p:read("a")) == 0 and "true" or "unreadable"
  p:close()

  for _, mode in ipairs { "BackgroundAsync", "ForegroundBlocking" } do
    it("unsets the variables that went into queue.uri before a job runs (" .. mode .. ")", function()
      app(mode, "${REDIS_URL}", { ["workers/env_worker.lua"] = ENV_WORKER })
      local out, status = H.run({ "--env", "test", "enqueue", "EnvWorker" },
        { cwd = root, env = { REDIS_URL = "redis://:s3cret@127.0.0.1:1/0", WH_OTHER = "kept" } })
      assert.are.equal(0, status, out)
      assert.matches("getenv: REDIS_URL=nil REDIS_PW=nil WH_OTHER=kept; initial environ has REDIS_URL: "
        .. environ_shows, out, 1, true)

      H.rmdir(root)
      app(mode, "redis://:${REDIS_PW}@127.0.0.1:1/0", { ["workers/env_worker.lua"] = ENV_WORKER })
      out, status = H.run({ "--env", "test", "enqueue", "EnvWorker" },
        { cwd = root, env = { REDIS_URL = "unused", REDIS_PW = "s3cret", WH_OTHER = "kept" } })
      assert.are.equal(0, status, out)
      assert.matches("getenv: REDIS_URL=unused REDIS_PW=nil WH_OTHER=kept", out, 1, true)
    end)
  end
end)
