-- BackgroundQueue: outcomes as Sidekiq records them (retry, dead, counters),
-- with our departures (refused arguments, unknown classes, garbage), and
-- payloads kept byte for byte. Each test starts its own redis-server.
local S = require "spec.queue.support"

-- The raw text of a top-level scalar field (a number as written).
local function field_text(member, key)
  return member:match('"' .. key .. '":([^,}]+)')
end

describe("BackgroundQueue outcomes", function()
  local r, app, h
  before_each(function()
    r = S.redis_start()
    app = S.app(r, { workers = { ["x.lua"] = { name = "X", fail_negative = true } } })
    h = S.host_start(app)
    h:wait_ready()
  end)
  after_each(function() S.cleanup() end)

  local function wait_failed(n)
    return S.wait_for(function() return r:num("GET", "stat:failed") >= n end, 5, 0.02)
  end

  it("a job that raises goes to retry with Sidekiq's fields, the rest of the payload kept exactly", function()
    local jid = S.jid()
    local extra = '"big":9223372036854775807,"small":-9223372036854775808,"f":1.10,"e":2.50E+3,'
      .. '"tags":["a","b"],"custom":{"nested":[1,2.0,null],"s":"h\\u00e9\\"llo"},"unicode":"héllo"'
    local p = S.job({ jid = jid, args = '[{"n":-7}]', extra = extra })
    local t0 = S.now()
    r:push("default", { p })
    assert.truthy(wait_failed(1))
    local member, score = r:zfind("retry", jid)
    assert.truthy(member, "in the retry set")
    local j = S.decode(member)
    assert.are.equal("X", j.class)
    assert.truthy(j.error_message:find("boom %-7"), j.error_message)
    assert.are.equal("WorkerHost::LuaError", j.error_class)
    assert.are.equal(0, j.retry_count)
    assert.are.equal("0", field_text(member, "retry_count"), "retry_count is an integer")
    assert.truthy(field_text(member, "failed_at"):match("^%d+%.%d+$"), "failed_at is a float")
    assert.truthy(math.abs(j.failed_at - t0) < 5)
    assert.is_nil(j.retried_at)
    local delay = score - j.failed_at
    assert.truthy(delay >= 15 - 0.01 and delay <= 24 + 0.01, "backoff " .. delay)
    assert.are.equal("default", j.queue)
    -- unknown fields kept, every number as written (string escapes may be
    -- rewritten to the same characters: "\u00e9" -> "é")
    local numbers = '"big":9223372036854775807,"small":-9223372036854775808,"f":1.10,"e":2.50E+3,'
      .. '"tags":["a","b"],"custom":{"nested":[1,2.0,null],"s":'
    assert.truthy(member:find(numbers, 1, true), "kept byte-exact:\n" .. member)
    assert.are.equal('h\u{e9}"llo', j.custom.s)
    assert.are.equal("héllo", j.unicode)
    assert.truthy(member:find('"created_at":1700000000.25', 1, true))
    assert.truthy(member:find('"enqueued_at":1700000000.5', 1, true))
    assert.truthy(member:find('"args":[{"n":-7}]', 1, true))
    assert.are.equal(1, r:num("GET", "stat:processed"))
    assert.are.equal(1, r:num("GET", "stat:failed"))
    assert.are.equal(0, r:num("ZCARD", "dead"))
  end)

  it("retry: 0 goes to the dead set at once", function()
    local jid = S.jid()
    r:push("default", { S.job({ jid = jid, args = '[{"n":-1}]', retry = "0" }) })
    assert.truthy(wait_failed(1))
    assert.truthy(S.wait_for(function() return r:zfind("dead", jid) end, 3))
    local member, score = r:zfind("dead", jid)
    local j = S.decode(member)
    assert.are.equal("WorkerHost::LuaError", j.error_class)
    assert.are.equal(0, j.retry_count)
    assert.truthy(math.abs(score - S.now()) < 5)
    assert.are.equal(0, r:num("ZCARD", "retry"))
  end)

  it("retry: false drops the job after counting it", function()
    local jid = S.jid()
    r:push("default", { S.job({ jid = jid, args = '[{"n":-1}]', retry = "false" }) })
    assert.truthy(wait_failed(1))
    S.sleep(0.1)
    assert.are.equal(0, r:num("ZCARD", "retry"))
    assert.are.equal(0, r:num("ZCARD", "dead"))
    assert.are.equal(1, r:num("GET", "stat:processed"))
    assert.are.equal(1, r:num("GET", "stat:failed"))
    assert.are.equal(0, S.inflight_total(r))
  end)

  it("exhausted retries go to dead, unless the payload says dead: false", function()
    local keep, drop = S.jid(), S.jid()
    local base = '"retry_count":1,"error_message":"old","error_class":"X","failed_at":1700000001.5'
    r:push("default", {
      S.job({ jid = keep, args = '[{"n":-1}]', retry = "2", extra = base }),
      S.job({ jid = drop, args = '[{"n":-1}]', retry = "2", extra = base .. ',"dead":false' }),
    })
    assert.truthy(wait_failed(2))
    S.sleep(0.1)
    assert.are.equal(0, r:num("ZCARD", "retry"))
    local member = r:zfind("dead", keep)
    assert.truthy(member, "exhausted: dead")
    local j = S.decode(member)
    assert.are.equal(2, j.retry_count)
    assert.truthy(j.error_message:find("boom"))
    assert.truthy(field_text(member, "retried_at"):match("^%d+%.%d+$"), "retried_at is a float")
    assert.truthy(member:find('"failed_at":1700000001.5', 1, true), "the first failure time is kept")
    assert.is_nil(r:zfind("dead", drop))
    assert.are.equal(1, r:num("ZCARD", "dead"))
    assert.are.equal(2, r:num("GET", "stat:failed"))
  end)

  it("arguments the C check refuses go to dead naming the path, with no retry, and perform never runs", function()
    local jid = S.jid()
    r:push("default", { S.job({ jid = jid, args = '[{"n":"seven"}]' }) })
    assert.truthy(S.wait_for(function() return r:zfind("dead", jid) end, 5))
    local j = S.decode((r:zfind("dead", jid)))
    assert.truthy(j.error_message:find("args.n: expected integer, got string", 1, true), j.error_message)
    assert.are.equal("WorkerHost::ArgumentError", j.error_class)
    assert.are.equal(0, j.retry_count)
    assert.are.equal(0, r:num("ZCARD", "retry"))
    assert.are.equal(0, S.run_count(app))
  end)

  it("a class no script defines, with no retry field, is retried (retry_count 0)", function()
    local jid = S.jid()
    r:push("default", { S.job({ jid = jid, class = "NoSuchWorker", retry = false }) })
    assert.truthy(S.wait_for(function() return r:zfind("retry", jid) end, 5))
    local member, score = r:zfind("retry", jid)
    local j = S.decode(member)
    assert.are.equal("NameError", j.error_class)
    assert.are.equal(0, j.retry_count)
    assert.is_nil(j.retry, "no retry field is added")
    assert.truthy(score > S.now() + 10)
    assert.are.equal(0, r:num("ZCARD", "dead"))
  end)

  it("garbage in a queue goes to dead; the host goes on and good jobs still run", function()
    local not_json = '{"class":"X","args":[{"n":1}],"jid":"' .. S.jid() .. '"'
    r:push("default", { not_json })
    assert.truthy(S.wait_for(function() return r:num("ZCARD", "dead") == 1 end, 5))
    assert.truthy(r:call("ZSCORE", "dead", not_json) ~= "", "in dead as it is")
    assert.are.equal(0, r:num("GET", "stat:processed"), "not JSON counts nothing")
    assert.are.equal(0, r:num("GET", "stat:failed"))

    local garbage = {
      "[1,2,3]",
      '"just a string"',
      "42",
      "null",
      '{"args":[{"n":1}],"jid":"' .. S.jid() .. '","queue":"default"}', -- no class
      '{"class":"X","args":{"n":1},"jid":"' .. S.jid() .. '"}', -- args not an array
      '{"class":"X","args":[{"n":1}],"jid":"' .. S.jid() .. '","x":1,"x":2}', -- duplicate key
    }
    r:push("default", garbage)
    -- invalid UTF-8, pushed with redis-cli's own escapes
    r:pipe({ [[LPUSH queue:default "{\"class\":\"X\",\"args\":[{\"n\":1}],\"jid\":\"]] .. S.jid()
      .. [[\",\"s\":\"\xff\xfe\"}"]] })
    assert.truthy(S.wait_for(function() return r:num("ZCARD", "dead") == 9 end, 5),
      "dead has " .. r:num("ZCARD", "dead") .. "\n" .. h:tail())
    for _, g in ipairs(garbage) do
      assert.truthy(r:call("ZSCORE", "dead", g) ~= "", "in dead as it is: " .. g)
    end
    assert.truthy(h:alive())
    assert.are.equal(0, S.inflight_total(r))
    assert.are.equal(0, r:num("LLEN", "queue:default"))

    local p, jids = S.jobs(1)
    r:push("default", p)
    assert.are.equal(1, S.wait_runs(app, 1, 5))
    assert.are.equal(jids[1], S.runs(app)[1].jid)
    assert.truthy(h:alive())
  end)
end)
