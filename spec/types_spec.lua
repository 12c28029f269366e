-- The type system, through the real C check: workers defined inline, jobs
-- performed with workerhost.testing (ForegroundBlocking style, in this VM).
local wh = require "workerhost"
local testing = require "workerhost.testing"
local cjson = require "cjson"
local t = wh.types

describe("types", function()
  local app, received, calls

  -- Defines worker W with these args (and extra options), makes it the
  -- current app, and records what perform receives.
  local function worker(args, extra)
    local spec = { name = "W", args = args, perform = function(a, job)
      received = a
      calls = calls + 1
    end }
    for k, v in pairs(extra or {}) do spec[k] = v end
    app = testing.worker(wh.worker(spec))
    return app
  end

  -- Performs W with args; asserts it ran; returns what perform received.
  local function perform(args)
    received = nil
    local jid, ok, err = app:perform_later("W", args)
    assert.is_true(ok, err)
    assert.is_nil(err)
    assert.matches("^%x+$", jid)
    return received
  end

  -- Asserts that the check refuses args with exactly this message and that
  -- perform did not run.
  local function refused(args, message)
    local before = calls
    assert.has_error(function() app:perform_later("W", args) end, message)
    assert.are.equal(before, calls, "perform ran for refused arguments")
  end

  local function refused_at_definition(args, message, extra)
    assert.has_error(function() worker(args, extra) end, message)
  end

  before_each(function()
    received, calls = nil, 0
  end)

  after_each(function()
    if app then app:close() end
    app = nil
  end)

  describe("shorthand strings", function()
    before_each(function()
      worker { s = "string", i = "integer", n = "number", b = "boolean", a = "any" }
    end)

    it("accept values of their type and pass them to perform", function()
      local got = perform { s = "hi", i = 7, n = 1.25, b = false, a = { x = 1 } }
      assert.are.equal("hi", got.s)
      assert.are.equal(7, got.i)
      assert.are.equal("integer", math.type(got.i))
      assert.are.equal(1.25, got.n)
      assert.is_false(got.b)
      assert.are.same({ x = 1 }, got.a)
    end)

    it("refuse a value of another type, naming the path and both types", function()
      local good = { s = "hi", i = 7, n = 1.25, b = false, a = 0 }
      local function with(k, v)
        local c = {}
        for key, val in pairs(good) do c[key] = val end
        c[k] = v
        return c
      end
      refused(with("s", 1), "wh.enqueue: W: args.s: expected string, got integer")
      refused(with("i", "7"), "wh.enqueue: W: args.i: expected integer, got string")
      refused(with("n", true), "wh.enqueue: W: args.n: expected number, got boolean")
      refused(with("b", "false"), "wh.enqueue: W: args.b: expected boolean, got string")
      refused(with("b", 0), "wh.enqueue: W: args.b: expected boolean, got integer")
    end)

    it("refuse a missing required field", function()
      refused({ s = "hi", i = 7, n = 1, b = true },
        "wh.enqueue: W: args.a: missing (expected any)")
      refused({ i = 7, n = 1, b = true, a = 1 },
        "wh.enqueue: W: args.s: missing (expected string)")
    end)

    it("refuse null for a required field", function()
      refused({ s = wh.null, i = 7, n = 1, b = true, a = 1 },
        "wh.enqueue: W: args.s: expected string, got null")
    end)

    it("with a trailing ? may be absent or null, and perform sees nil", function()
      worker { s = "string?", i = "integer?", n = "number?", b = "boolean?", a = "any?" }
      local got = perform {}
      assert.are.same({}, got)
      got = perform { s = wh.null, i = cjson.null, n = wh.null, b = wh.null }
      assert.is_nil(got.s)
      assert.is_nil(got.i)
      assert.is_nil(got.n)
      assert.is_nil(got.b)
      got = perform { s = "x", b = true }
      assert.are.equal("x", got.s)
      assert.is_true(got.b)
    end)

    it("with a trailing ? still check the type when present", function()
      worker { s = "string?" }
      refused({ s = 5 }, "wh.enqueue: W: args.s: expected string?, got integer")
    end)

    it("t.optional(\"string\") is the shorthand \"string?\"", function()
      assert.are.equal("string?", t.optional("string"))
      assert.are.equal("string?", t.optional("string?"))
      worker { s = t.optional("string") }
      assert.are.same({}, perform {})
    end)

    it("wh.t is wh.types", function()
      assert.are.equal(wh.types, wh.t)
    end)
  end)

  describe("t.string", function()
    it("counts min_len and max_len in UTF-8 characters, not bytes", function()
      worker { name = t.string { min_len = 2, max_len = 5 } }
      assert.are.equal("héllo", perform({ name = "héllo" }).name) -- 5 characters, 6 bytes
      assert.are.equal("日本", perform({ name = "日本" }).name)   -- 2 characters, 6 bytes
      refused({ name = "héllo!" }, "wh.enqueue: W: args.name: expected at most 5 characters, got 6")
      refused({ name = "é" }, "wh.enqueue: W: args.name: expected at least 2 characters, got 1")
      refused({ name = 5 }, "wh.enqueue: W: args.name: expected string(min_len=2, max_len=5), got integer")
    end)

    it("accepts a long string when there is no max_len", function()
      worker { body = "string" }
      local long = string.rep("abcdefghij", 100000) -- 1 MB
      assert.are.equal(#long, #perform({ body = long }).body)
    end)

    it("cuts a long string shown in a message", function()
      worker { e = t.enum { "a" } }
      local long = string.rep("x", 1000)
      refused({ e = long }, 'wh.enqueue: W: args.e: expected enum("a"), got "'
        .. string.rep("x", 40) .. '"... (1000 bytes)')
    end)
  end)

  describe("t.integer and t.number", function()
    it("t.integer{min, max} are inclusive bounds", function()
      worker { n = t.integer { min = 0, max = 10 } }
      assert.are.equal(0, perform({ n = 0 }).n)
      assert.are.equal(10, perform({ n = 10 }).n)
      refused({ n = -1 }, "wh.enqueue: W: args.n: expected an integer >= 0, got -1")
      refused({ n = 11 }, "wh.enqueue: W: args.n: expected an integer <= 10, got 11")
    end)

    it("integer refuses 1.5 and a Lua float 2.0", function()
      worker { n = "integer" }
      refused({ n = 1.5 }, "wh.enqueue: W: args.n: expected integer, got number 1.5")
      refused({ n = 2.0 }, "wh.enqueue: W: args.n: expected integer, got number 2.0")
      refused({ n = 2 ^ 53 }, "wh.enqueue: W: args.n: expected integer, got number 9007199254740992.0")
    end)

    it("number accepts integers and floats and keeps which one it was", function()
      worker { x = "number" }
      local got = perform { x = 2 }
      assert.are.equal(2, got.x)
      assert.are.equal("integer", math.type(got.x))
      got = perform { x = 2.0 }
      assert.are.equal("float", math.type(got.x))
      got = perform { x = 2.5 }
      assert.are.equal(2.5, got.x)
      assert.are.equal("float", math.type(got.x))
    end)

    it("t.number{min, max} are inclusive bounds", function()
      worker { r = t.number { min = 0, max = 1 } }
      assert.are.equal(0, perform({ r = 0 }).r)
      assert.are.equal(1, perform({ r = 1.0 }).r)
      refused({ r = 1.5 }, "wh.enqueue: W: args.r: expected a number <= 1, got 1.5")
      refused({ r = -0.25 }, "wh.enqueue: W: args.r: expected a number >= 0, got -0.25")
    end)

    it("NaN and infinities cannot be sent", function()
      worker { x = "number" }
      refused({ x = 0 / 0 }, "wh.enqueue: W: args.x: NaN and infinity cannot be sent as job arguments")
      refused({ x = math.huge }, "wh.enqueue: W: args.x: NaN and infinity cannot be sent as job arguments")
      refused({ x = -math.huge }, "wh.enqueue: W: args.x: NaN and infinity cannot be sent as job arguments")
    end)

    it("int64 edges survive exactly into perform", function()
      worker { i = "integer", n = "number", l = t.array("integer") }
      local got = perform { i = math.maxinteger, n = math.mininteger, l = { math.mininteger, math.maxinteger } }
      assert.are.equal("integer", math.type(got.i))
      assert.is_true(got.i == math.maxinteger)
      assert.are.equal("integer", math.type(got.n))
      assert.is_true(got.n == math.mininteger)
      assert.is_true(got.l[1] == math.mininteger)
      assert.is_true(got.l[2] == math.maxinteger)
      got = perform { i = math.mininteger, n = math.maxinteger, l = {} }
      assert.is_true(got.i == math.mininteger)
      assert.is_true(got.n == math.maxinteger)
    end)

    it("int64 bounds work as min and max", function()
      worker { i = t.integer { min = math.mininteger, max = math.maxinteger } }
      assert.is_true(perform({ i = math.mininteger }).i == math.mininteger)
      assert.is_true(perform({ i = math.maxinteger }).i == math.maxinteger)
    end)
  end)

  describe("t.boolean and t.any", function()
    it("are constructors too", function()
      worker { b = t.boolean, a = t.any, ob = t.boolean:optional() }
      local got = perform { b = true, a = "anything" }
      assert.is_true(got.b)
      assert.are.equal("anything", got.a)
      assert.is_nil(got.ob)
      refused({ b = "true", a = 1 }, "wh.enqueue: W: args.b: expected boolean, got string")
    end)

    it("any accepts every JSON value", function()
      worker { a = t.any }
      for _, v in ipairs { 1, 1.5, "s", true, false, { 1, 2 }, { k = "v" } } do
        assert.are.same(v, perform({ a = v }).a)
      end
    end)
  end)

  describe("t.array", function()
    it("checks every item and names its 1-based index", function()
      worker { tags = t.array("string") }
      assert.are.same({ "a", "b" }, perform({ tags = { "a", "b" } }).tags)
      refused({ tags = { "a", 2 } }, "wh.enqueue: W: args.tags[2]: expected string, got integer")
      refused({ tags = "a" }, "wh.enqueue: W: args.tags: expected array(string), got string")
      refused({ tags = { x = "a" } }, "wh.enqueue: W: args.tags: expected array(string), got object")
    end)

    it("t.array(T, {min_items, max_items})", function()
      worker { l = t.array("integer", { min_items = 1, max_items = 2 }) }
      assert.are.same({ 1 }, perform({ l = { 1 } }).l)
      assert.are.same({ 1, 2 }, perform({ l = { 1, 2 } }).l)
      refused({ l = {} }, "wh.enqueue: W: args.l: expected at least 1 item, got 0")
      refused({ l = { 1, 2, 3 } }, "wh.enqueue: W: args.l: expected at most 2 items, got 3")
    end)

    it("t.array(T) can be called with options", function()
      worker { l = t.array("integer") { min_items = 1 } }
      refused({ l = {} }, "wh.enqueue: W: args.l: expected at least 1 item, got 0")
    end)

    it("arrays of arrays", function()
      worker { m = t.array(t.array("number")) }
      assert.are.same({ { 1, 2.5 }, {} }, perform({ m = { { 1, 2.5 }, {} } }).m)
      refused({ m = { { 1 }, { 2, "x" } } }, "wh.enqueue: W: args.m[2][2]: expected number, got string")
    end)

    it("nested objects in arrays, with paths and defaults", function()
      worker { items = t.array(t.object { sku = "string", qty = t.integer { min = 1 }:default(1) }) }
      local got = perform { items = { { sku = "a" }, { sku = "b", qty = 3 }, { sku = "c", qty = wh.null } } }
      assert.are.same({ { sku = "a", qty = 1 }, { sku = "b", qty = 3 }, { sku = "c", qty = 1 } }, got.items)
      refused({ items = { { sku = "a" }, { sku = "b", qty = "2" } } },
        "wh.enqueue: W: args.items[2].qty: expected integer(min=1) = 1, got string")
      refused({ items = { { sku = "a" }, { qty = 2 } } },
        "wh.enqueue: W: args.items[2].sku: missing (expected string)")
      refused({ items = { { sku = "a", colour = "red" } } },
        "wh.enqueue: W: args.items[1].colour: unknown field (known: qty, sku)")
    end)

    it("sparse lists and tables mixing items and keys cannot be sent", function()
      worker { a = "any" }
      refused({ a = { 1, nil, 3 } },
        "wh.enqueue: W: args.a: a table mixing list items and named fields (or a sparse list) cannot be sent as a job argument")
      refused({ a = { 1, x = 2 } },
        "wh.enqueue: W: args.a: a table mixing list items and named fields (or a sparse list) cannot be sent as a job argument")
    end)
  end)

  describe("t.enum", function()
    it("of strings", function()
      worker { level = t.enum { "low", "high" } }
      assert.are.equal("high", perform({ level = "high" }).level)
      refused({ level = "mid" }, 'wh.enqueue: W: args.level: expected enum("low", "high"), got "mid"')
      refused({ level = 1 }, 'wh.enqueue: W: args.level: expected enum("low", "high"), got 1')
    end)

    it("of integers", function()
      worker { p = t.enum { 1, 2, 3 } }
      assert.are.equal(2, perform({ p = 2 }).p)
      refused({ p = 4 }, "wh.enqueue: W: args.p: expected enum(1, 2, 3), got 4")
      refused({ p = 2.0 }, "wh.enqueue: W: args.p: expected enum(1, 2, 3), got 2.0")
      refused({ p = "2" }, 'wh.enqueue: W: args.p: expected enum(1, 2, 3), got "2"')
    end)

    it("with a default", function()
      worker { channel = t.enum({ "email", "sms" }, { default = "email" }) }
      assert.are.equal("email", perform({}).channel)
      assert.are.equal("sms", perform({ channel = "sms" }).channel)
    end)

    it("needs a non-empty list of strings or integers", function()
      assert.has_error(function() t.enum {} end, "wh.types.enum: expected a non-empty list of values")
      refused_at_definition({ e = t.enum { 1.5 } }, "wh.worker: args.e: enum values must be strings or integers")
      refused_at_definition({ e = t.enum { true } }, "wh.worker: args.e: enum values must be strings or integers")
    end)
  end)

  describe("t.object", function()
    it("checks nested fields with their path", function()
      worker { address = t.object { street = "string", zip = "string?" } }
      assert.are.same({ street = "Main St" }, perform({ address = { street = "Main St" } }).address)
      refused({ address = { street = 1 } }, "wh.enqueue: W: args.address.street: expected string, got integer")
      refused({ address = {} }, "wh.enqueue: W: args.address.street: missing (expected string)")
      refused({ address = "Main St" },
        "wh.enqueue: W: args.address: expected {street: string, zip: string?}, got string")
    end)

    it("refuses unknown nested fields unless allow_unknown", function()
      worker { a = t.object { id = "integer" }, b = t.object({ id = "integer" }, { allow_unknown = true }) }
      refused({ a = { id = 1, x = 2 }, b = { id = 1 } },
        "wh.enqueue: W: args.a.x: unknown field (known: id)")
      local got = perform { a = { id = 1 }, b = { id = 2, extra = { deep = true } } }
      assert.are.same({ id = 2, extra = { deep = true } }, got.b)
    end)

    it("objects in objects", function()
      worker { o = t.object { p = t.object { q = t.array("boolean") } } }
      assert.are.same({ p = { q = { true } } }, perform({ o = { p = { q = { true } } } }).o)
      refused({ o = { p = { q = { true, "no" } } } }, "wh.enqueue: W: args.o.p.q[2]: expected boolean, got string")
    end)
  end)

  describe(":optional(), :default(v) and {default = ...}", function()
    it(":optional() is like a trailing ?", function()
      worker { note = t.string:optional(), n = t.integer { min = 1 }:optional() }
      assert.are.same({}, perform {})
      assert.are.same({}, perform { note = wh.null, n = wh.null })
      refused({ n = 0 }, "wh.enqueue: W: args.n: expected an integer >= 1, got 0")
    end)

    it("defaults reach perform when the value is absent or null", function()
      worker {
        retries = t.integer:default(3),
        ratio = t.number { min = 0, max = 1, default = 0.5 },
        who = t.string { default = "nobody" },
        tags = t.array("string"):default({ "a", "b" }),
        flag = t.boolean:default(false),
      }
      local want = { retries = 3, ratio = 0.5, who = "nobody", tags = { "a", "b" }, flag = false }
      assert.are.same(want, perform {})
      assert.are.same(want, perform { retries = wh.null, ratio = wh.null, who = cjson.null, tags = wh.null, flag = wh.null })
      assert.are.same({ retries = 9, ratio = 0.25, who = "me", tags = {}, flag = true },
        perform { retries = 9, ratio = 0.25, who = "me", tags = {}, flag = true })
    end)

    it("a default makes the value optional but still checks a present one", function()
      worker { retries = t.integer { max = 5 }:default(3) }
      refused({ retries = 6 }, "wh.enqueue: W: args.retries: expected an integer <= 5, got 6")
    end)

    it("a default that fails its own type is refused when the worker is defined", function()
      refused_at_definition({ a = t.integer { min = 5 }:default(1) },
        "wh.worker: args.a (default): expected an integer >= 5, got 1")
      refused_at_definition({ a = t.string { max_len = 2, default = "abc" } },
        "wh.worker: args.a (default): expected at most 2 characters, got 3")
      refused_at_definition({ a = t.enum({ "x" }, { default = "y" }) },
        'wh.worker: args.a (default): expected enum("x"), got "y"')
      refused_at_definition({ a = t.integer:default("3") },
        "wh.worker: args.a (default): expected integer, got string")
      refused_at_definition({ a = t.integer:default(1.5) },
        "wh.worker: args.a (default): expected integer, got number 1.5")
      refused_at_definition({ a = t.object { b = "string" }:default({}) },
        "wh.worker: args.a (default).b: missing (expected string)")
    end)

    it("a nil or null default is refused", function()
      refused_at_definition({ a = t.integer:default(nil) },
        "wh.worker: args.a: a default of nil means no default; use optional")
      refused_at_definition({ a = t.integer { default = wh.null } },
        "wh.worker: args.a: a default of nil means no default; use optional")
    end)
  end)

  describe("positional arguments", function()
    it("a list of types means args is a sequence", function()
      worker { "string", "integer", t.number:optional() }
      local got = perform { "a", 2, 3.5 }
      assert.are.same({ "a", 2, 3.5 }, got)
      got = perform { "a", 2 }
      assert.are.same({ "a", 2 }, got)
    end)

    it("trailing optional arguments may be left out or null; defaults apply", function()
      worker { "string", t.integer:default(7), "string?" }
      assert.are.same({ "a", 7 }, perform { "a" })
      assert.are.same({ "a", 7 }, perform { "a", wh.null, wh.null })
      assert.are.same({ "a", 1, "z" }, perform { "a", 1, "z" })
    end)

    it("errors name the 1-based position", function()
      worker { "string", "integer", "number?" }
      refused({ "a", "b" }, "wh.enqueue: W: args[2]: expected integer, got string")
      refused({ 1, 2 }, "wh.enqueue: W: args[1]: expected string, got integer")
      refused({ "a", 2, "c" }, "wh.enqueue: W: args[3]: expected number?, got string")
    end)

    it("refuses too few or too many arguments", function()
      worker { "string", "integer", "number?" }
      refused({ "a" }, "wh.enqueue: W: args: expected 2 to 3 arguments, got 1")
      refused({ "a", 1, 2, 3 }, "wh.enqueue: W: args: expected 2 to 3 arguments, got 4")
      worker { "string" }
      refused({}, "wh.enqueue: W: args: expected 1 argument, got 0")
      refused({ "a", "b" }, "wh.enqueue: W: args: expected 1 argument, got 2")
    end)

    it("refuses named arguments for a positional worker", function()
      worker { "string" }
      refused({ x = "a" }, "wh.enqueue: W: args: expected a list of positional arguments")
    end)

    it("nested types at a position", function()
      worker { t.array(t.object { id = "integer" }) }
      refused({ { { id = 1 }, { id = "2" } } }, "wh.enqueue: W: args[1][2].id: expected integer, got string")
    end)

    it("a required argument after an optional one is refused when the worker is defined", function()
      refused_at_definition({ "string?", "integer" },
        "wh.worker: args[2]: a required positional argument cannot follow an optional one")
      refused_at_definition({ "string", t.integer:default(1), "boolean" },
        "wh.worker: args[3]: a required positional argument cannot follow an optional one")
    end)
  end)

  describe("no arguments", function()
    for _, case in ipairs { { "absent", nil }, { "{}", {} } } do
      it("args " .. case[1] .. " means no arguments", function()
        worker(case[2])
        assert.are.same({}, perform(nil))
        assert.are.same({}, perform {})
        refused({ x = 1 }, "wh.enqueue: W: args: expected no arguments ({} or []), got object")
        refused({ 1 }, "wh.enqueue: W: args: expected no arguments ({} or []), got array")
      end)
    end
  end)

  it("a table mixing named and positional entries is refused when the worker is defined", function()
    refused_at_definition({ "string", a = "integer" },
      "wh.worker: args: a table mixing named fields and positional types is not allowed; use either {name = type, ...} or {type, type, ...}")
  end)

  describe("unknown fields", function()
    it("are refused, listing the known ones", function()
      worker { user_guid = "string", count = "integer?" }
      refused({ user_guid = "x", colour = "red" },
        "wh.enqueue: W: args.colour: unknown field (known: count, user_guid)")
    end)

    it("are accepted with allow_unknown_args = true, and reach perform", function()
      worker({ user_guid = "string" }, { allow_unknown_args = true })
      assert.are.same({ user_guid = "x", colour = "red" }, perform { user_guid = "x", colour = "red" })
      refused({ user_guid = 1 }, "wh.enqueue: W: args.user_guid: expected string, got integer")
    end)

    it("with allow_unknown_args = true, unknown fields are still values that can be sent", function()
      worker({ user_guid = "string" }, { allow_unknown_args = true })
      refused({ user_guid = "x", f = print }, "wh.enqueue: W: args.f: cannot send a function as a job argument")
    end)
  end)

  describe("error messages", function()
    it("are exact, with the worker and the path", function()
      worker { user_guid = "string" }
      refused({ user_guid = 42 }, "wh.enqueue: W: args.user_guid: expected string, got integer")
    end)

    it("for args that are not a table", function()
      worker { user_guid = "string" }
      refused("x", "wh.enqueue: W: args: expected a table, got string")
      refused(42, "wh.enqueue: W: args: expected a table, got number")
    end)
  end)

  describe("Lua values that cannot be sent", function()
    before_each(function() worker { a = "any?", s = "string?" } end)

    it("invalid UTF-8 strings", function()
      refused({ s = "ab\xff" }, "wh.enqueue: W: args.s: string is not valid UTF-8")
      refused({ s = "\xc3" }, "wh.enqueue: W: args.s: string is not valid UTF-8")        -- truncated sequence
      refused({ s = "\xed\xa0\x80" }, "wh.enqueue: W: args.s: string is not valid UTF-8") -- a surrogate
      refused({ a = { "ok", "\xc0\xaf" } }, "wh.enqueue: W: args.a[2]: string is not valid UTF-8") -- overlong
      refused({ a = { ["k\xff"] = 1 } }, "wh.enqueue: W: args.a.k\xff: field name is not valid UTF-8")
    end)

    it("functions, userdata and coroutines, with a clear message", function()
      refused({ a = print }, "wh.enqueue: W: args.a: cannot send a function as a job argument")
      refused({ a = io.stdout }, "wh.enqueue: W: args.a: cannot send a userdata as a job argument")
      refused({ a = coroutine.create(print) }, "wh.enqueue: W: args.a: cannot send a thread as a job argument")
      refused({ a = { k = { 1, function() end } } },
        "wh.enqueue: W: args.a.k[2]: cannot send a function as a job argument")
    end)

    it("a table that contains itself", function()
      local loop = {}
      loop.self = loop
      local ok, err = pcall(app.perform_later, app, "W", { a = loop })
      assert.is_false(ok)
      assert.matches("wh.enqueue: W: args.a.self.self", err, 1, true)
      assert.matches("nesting deeper than 64 (a table that contains itself?)", err, 1, true)
      assert.are.equal(0, calls)
    end)

    it("deep nesting: 63 levels under a field pass, 64 and 200 are refused", function()
      local function nest(n)
        local top = {}
        local cur = top
        for _ = 2, n do cur[1] = {} cur = cur[1] end
        return top
      end
      local got = perform { a = nest(63) }
      local depth, cur = 0, got.a
      while type(cur) == "table" do depth, cur = depth + 1, cur[1] end
      assert.are.equal(63, depth)
      for _, n in ipairs { 64, 200 } do
        local ok, err = pcall(app.perform_later, app, "W", { a = nest(n) })
        assert.is_false(ok)
        assert.matches("nesting deeper than 64", err, 1, true)
      end
    end)
  end)

  describe("null", function()
    it("wh.null is cjson.null", function()
      assert.are.equal(require("cjson").null, wh.null)
      assert.are.equal("userdata", type(wh.null))
    end)

    it("inside arrays, perform sees wh.null", function()
      worker { l = t.array("any"), s = t.array("string?") }
      local got = perform { l = { 1, wh.null, cjson.null, "x" }, s = { "a", wh.null } }
      assert.are.equal(4, #got.l)
      assert.are.equal(1, got.l[1])
      assert.are.equal(wh.null, got.l[2])
      assert.are.equal(cjson.null, got.l[3])
      assert.are.equal("x", got.l[4])
      assert.are.equal(wh.null, got.s[2])
    end)

    it("inside any values, perform sees wh.null", function()
      worker { a = "any" }
      local got = perform { a = { x = wh.null, l = { cjson.null } } }
      assert.are.equal(wh.null, got.a.x)
      assert.are.equal(wh.null, got.a.l[1])
    end)

    it("an any argument that is null: perform sees wh.null (positional)", function()
      worker { "any", "integer" }
      local got = perform { wh.null, 1 }
      assert.are.equal(wh.null, got[1])
      assert.are.equal(1, got[2])
    end)

    it("an any field that is null: perform sees wh.null (named)", function()
      -- `any` is required here (absent is refused), yet null is accepted: it
      -- must reach perform as wh.null, as it does for positional arguments.
      worker { a = "any" }
      local got = perform { a = wh.null }
      assert.are.equal(wh.null, got.a)
    end)
  end)

  describe("empty tables", function()
    it("become [] where the schema expects an array and {} where it expects an object", function()
      worker { l = t.array("string"), o = t.object {}, lo = t.array("string"):optional() }
      local got = perform { l = {}, o = {}, lo = {} }
      assert.are.same({}, got.l)
      assert.are.same({}, got.o)
      assert.are.same({}, got.lo)
      -- the schema decides, whatever metatable the table carries
      got = perform { l = {}, o = setmetatable({}, wh.array_mt) }
      assert.are.same({}, got.o)
      refused({ l = {}, o = { 1 } }, "wh.enqueue: W: args.o: expected {}, got array")
    end)

    it("in any, {} is an object and a table with wh.array_mt is an array", function()
      worker { a = "any", b = "any", c = t.array("any") }
      local got = perform { a = {}, b = setmetatable({}, wh.array_mt), c = { {}, setmetatable({}, wh.array_mt) } }
      assert.is_nil(getmetatable(got.a))
      assert.are.equal(wh.array_mt, getmetatable(got.b))
      assert.is_nil(getmetatable(got.c[1]))
      assert.are.equal(wh.array_mt, getmetatable(got.c[2]))
    end)

    it("an empty array received in any goes back out as [] when enqueued again", function()
      local seen = {}
      local inner = wh.worker { name = "Inner", args = { l = "any" },
        perform = function(a) seen.inner = a.l end }
      local outer = wh.worker { name = "Outer", args = { a = "any" },
        perform = function(a)
          seen.outer = a.a
          local _, ok, err = wh.enqueue("Inner", { l = a.a })
          assert(ok, err)
        end }
      app = testing.worker(outer)
      app.workers.Inner = inner
      local _, ok, err = app:perform_later("Outer", { a = setmetatable({}, wh.array_mt) })
      assert.is_true(ok, err)
      assert.are.equal(wh.array_mt, getmetatable(seen.outer))
      assert.are.same({}, seen.inner)
      assert.are.equal(wh.array_mt, getmetatable(seen.inner))
    end)

    it("wh.array_mt is a table", function()
      assert.are.equal("table", type(wh.array_mt))
    end)
  end)
end)
