-- wh.worker{...}: options, defaults and the errors a definition gets when it
-- loads.
local wh = require "workerhost"
local testing = require "workerhost.testing"
local H = require "spec.helpers"
local t = wh.types

local function noop() end

-- Defines a worker with these options plus a perform (unless given).
local function define(opts)
  if opts.perform == nil and not opts.no_perform then opts.perform = noop end
  opts.no_perform = nil
  return wh.worker(opts)
end

describe("wh.worker", function()
  describe("options", function()
    it("refuses an unknown option, listing the known ones", function()
      assert.has_error(function() define { queues = "default" } end,
        'wh.worker: unknown option "queues" (known: name, queue, retry, timeout, args, perform, allow_unknown_args, description)')
      assert.has_error(function() wh.worker { perform = noop, [1] = "x" } end,
        'wh.worker: unknown option "number" (known: name, queue, retry, timeout, args, perform, allow_unknown_args, description)')
    end)

    it("needs a table", function()
      assert.has_error(function() wh.worker("DownloadWorker") end, "wh.worker: expected a table, got string")
      assert.has_error(function() wh.worker() end, "wh.worker: expected a table, got no value")
    end)

    it("needs perform, a function", function()
      assert.has_error(function() define { no_perform = true, args = {} } end,
        "wh.worker: perform must be a function (it is nil)")
      assert.has_error(function() define { perform = "run" } end,
        "wh.worker: perform must be a function (it is string)")
    end)

    it("refuses a bad retry", function()
      for _, bad in ipairs { -1, 1.5, "3", {} } do
        assert.has_error(function() define { retry = bad } end,
          "wh.worker: retry must be an integer >= 0, true (25) or false")
      end
    end)

    it("refuses a bad timeout", function()
      for _, bad in ipairs { 0, -1, "30", math.huge, 0 / 0, true } do
        assert.has_error(function() define { timeout = bad } end,
          "wh.worker: timeout must be a number of seconds > 0")
      end
    end)

    it("refuses a bad queue", function()
      for _, bad in ipairs { "", 5, true } do
        assert.has_error(function() define { queue = bad } end, "wh.worker: queue must be a non-empty string")
      end
    end)

    it("refuses a name that is not a class name", function()
      for _, bad in ipairs { "download_worker", "Has Space", "", "Bad-Name", "A::", "A::b" } do
        assert.has_error(function() define { name = bad } end,
          'wh.worker: name must be a class name such as "DownloadWorker" (a capital letter first, then letters, digits, _ or ::), got ' .. bad)
      end
      assert.has_error(function() define { name = 5 } end,
        'wh.worker: name must be a class name such as "DownloadWorker" (a capital letter first, then letters, digits, _ or ::), got number')
    end)

    it("accepts class names with digits, _ and ::", function()
      for _, good in ipairs { "A", "DownloadWorker", "My_Worker2", "Billing::ChargeWorker" } do
        assert.are.equal(good, define({ name = good }).name)
      end
    end)

    it("has defaults: queue \"default\", retry 25, no timeout, no name", function()
      local def = define {}
      assert.are.equal("default", def.queue)
      assert.are.equal(25, def.retry)
      assert.is_nil(def.timeout)
      assert.is_nil(def.name)
    end)

    it("retry = true is 25, retry = false stays false, a count stays", function()
      assert.are.equal(25, define({ retry = true }).retry)
      assert.is_false(define({ retry = false }).retry)
      assert.are.equal(0, define({ retry = 0 }).retry)
      assert.are.equal(5, define({ retry = 5 }).retry)
    end)

    it("keeps the options it was given", function()
      local def = define { name = "W", queue = "media", timeout = 2.5, description = "does things",
        allow_unknown_args = true }
      assert.are.equal("W", def.name)
      assert.are.equal("media", def.queue)
      assert.are.equal(2.5, def.timeout)
      assert.are.equal("does things", def.description)
      assert.is_true(def.allow_unknown_args)
      assert.are.equal("worker W", tostring(def))
    end)
  end)

  describe("argument types", function()
    it("refuses an unknown type, listing the known ones", function()
      assert.has_error(function() define { args = { count = "int" } } end,
        'wh.worker: args.count: unknown type "int" (known: string, integer, number, boolean, any, each with an optional trailing ?, and the constructors in wh.types)')
      assert.has_error(function() define { args = { count = "string??" } } end,
        'wh.worker: args.count: unknown type "string??" (known: string, integer, number, boolean, any, each with an optional trailing ?, and the constructors in wh.types)')
    end)

    it("names the path of an unknown type deep inside", function()
      assert.has_error(function() define { args = { l = t.array(t.object { x = "float" }) } } end,
        'wh.worker: args.l[].x: unknown type "float" (known: string, integer, number, boolean, any, each with an optional trailing ?, and the constructors in wh.types)')
      assert.has_error(function() define { args = { "string", "str" } } end,
        'wh.worker: args[2]: unknown type "str" (known: string, integer, number, boolean, any, each with an optional trailing ?, and the constructors in wh.types)')
    end)

    it("refuses a plain table as a type", function()
      assert.has_error(function() define { args = { address = { street = "string" } } } end,
        "wh.worker: args.address: a plain table is not a type; use wh.types.object{...} for a nested object or wh.types.array(T) for a list")
      assert.has_error(function() define { args = { tags = { "string" } } } end,
        "wh.worker: args.tags: a plain table is not a type; use wh.types.object{...} for a nested object or wh.types.array(T) for a list")
    end)

    it("refuses a value that is not a type", function()
      assert.has_error(function() define { args = { n = 5 } } end,
        'wh.worker: args.n: expected a type (a string such as "string" or a wh.types constructor), got number')
      assert.has_error(function() define { args = "string" } end,
        "wh.worker: args: expected a table of argument types, got string")
    end)

    it("refuses a misspelt constructor option", function()
      assert.has_error(function() define { args = { s = t.string { maxlen = 3 } } } end,
        'wh.worker: args.s: unknown option "maxlen" for string (known: min_len, max_len, optional, default)')
      assert.has_error(function() define { args = { l = t.array("string", { max = 3 }) } } end,
        'wh.worker: args.l: unknown option "max" for array (known: of, min_items, max_items, optional, default)')
      assert.has_error(function() define { args = { b = t.boolean { min = 1 } } } end,
        'wh.worker: args.b: unknown option "min" for boolean (known: optional, default)')
    end)

    it("refuses options of the wrong type", function()
      assert.has_error(function() define { args = { s = t.string { min_len = 1.5 } } } end,
        "wh.worker: args.s: option min_len must be an integer >= 0")
      assert.has_error(function() define { args = { s = t.string { max_len = -1 } } } end,
        "wh.worker: args.s: option max_len must be an integer >= 0")
      assert.has_error(function() define { args = { n = t.integer { min = 1.5 } } } end,
        "wh.worker: args.n: option min must be an integer")
      assert.has_error(function() define { args = { n = t.number { max = "1" } } } end,
        "wh.worker: args.n: option max must be a number")
    end)

    it("refuses bounds that no value can meet", function()
      assert.has_error(function() define { args = { n = t.integer { min = 5, max = 1 } } } end,
        "wh.worker: args.n: min is greater than max")
      assert.has_error(function() define { args = { n = t.number { min = 1, max = 0.5 } } } end,
        "wh.worker: args.n: min is greater than max")
      assert.has_error(function() define { args = { s = t.string { min_len = 3, max_len = 2 } } } end,
        "wh.worker: args.s: min_len is greater than max_len")
    end)

    it("refuses min_items greater than max_items, like min_len and max_len", function()
      assert.has_error(function() define { args = { l = t.array("string", { min_items = 3, max_items = 2 }) } } end,
        "wh.worker: args.l: min_items is greater than max_items")
    end)

    it("constructors check their own arguments", function()
      assert.has_error(function() t.array(5) end,
        'wh.types.array: expected a type (a string such as "string" or a wh.types constructor)')
      assert.has_error(function() t.object("x") end, "wh.types.object: expected a table of fields")
      assert.has_error(function() t.string("x") end, "type options must be a table such as {max_len = 64}")
    end)
  end)

  describe("errors carry the file and line of the definition", function()
    local function load_script(src, chunkname)
      local chunk = assert(load(src, chunkname))
      local ok, err = pcall(chunk)
      assert.is_false(ok)
      return err
    end

    it("for an unknown type", function()
      local err = load_script(table.concat({
        'local wh = require "workerhost"',
        "-- a comment",
        "return wh.worker {",
        '  args = { count = "int" },',
        "  perform = function() end,",
        "}",
      }, "\n"), "@workers/x.lua")
      assert.are.equal('workers/x.lua:3: wh.worker: args.count: unknown type "int" (known: string, integer, '
        .. 'number, boolean, any, each with an optional trailing ?, and the constructors in wh.types)', err)
    end)

    it("for a bad option and a missing perform", function()
      local err = load_script('local wh = require "workerhost"\nreturn wh.worker { retry = -1, perform = print }',
        "@workers/y.lua")
      assert.are.equal("workers/y.lua:2: wh.worker: retry must be an integer >= 0, true (25) or false", err)
      err = load_script('local wh = require "workerhost"\n\n\nreturn wh.worker { args = {} }', "@workers/z.lua")
      assert.are.equal("workers/z.lua:4: wh.worker: perform must be a function (it is nil)", err)
    end)

    it("for a default that fails its type", function()
      local err = load_script(
        'local wh = require "workerhost"\nlocal t = wh.types\nreturn wh.worker { args = { n = t.integer { min = 1 }:default(0) }, perform = print }',
        "@workers/d.lua")
      assert.are.equal("workers/d.lua:3: wh.worker: args.n (default): expected an integer >= 1, got 0", err)
    end)
  end)

  describe("the name defaults from the file name when loaded via testing.app", function()
    local root
    before_each(function() root = H.tmpdir() end)
    after_each(function() H.rmdir(root) end)

    it("download_worker.lua -> DownloadWorker, send-email.report.lua -> SendEmailReport", function()
      local body = 'local wh = require "workerhost"\nreturn wh.worker { perform = function() end }\n'
      H.write(root .. "/workers/download_worker.lua", body)
      H.write(root .. "/workers/send-email.report.lua", body)
      local app = testing.app { root = root }
      finally(function() app:close() end)
      assert.are.equal("DownloadWorker", app.workers.DownloadWorker.name)
      assert.are.equal("SendEmailReport", app.workers.SendEmailReport.name)
      local _, ok, err = app:perform_later("DownloadWorker")
      assert.is_true(ok, err)
    end)

    it("an explicit name wins over the file name", function()
      H.write(root .. "/workers/anything.lua",
        'local wh = require "workerhost"\nreturn wh.worker { name = "Billing::Charge", perform = function() end }\n')
      local app = testing.app { root = root }
      finally(function() app:close() end)
      assert.is_nil(app.workers.Anything)
      assert.is_not_nil(app.workers["Billing::Charge"])
    end)
  end)
end)
