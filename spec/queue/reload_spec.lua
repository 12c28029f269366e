-- BackgroundQueue and reload: `workerhost reload` reaches the local host (by
-- its pid file) and every other workerhost on the same Redis (RELOAD on its
-- <identity>-signals list); each runs the new code and publishes its
-- generation in the heartbeat's info. Starts its own redis-server.
local S = require "spec.queue.support"
local H = require "spec.helpers"

describe("BackgroundQueue reload", function()
  after_each(function() S.cleanup() end)

  it("workerhost reload reaches every host on the Redis, which run the new code", function()
    local r = S.redis_start()
    -- reload: false: no file watch; only the command reloads
    local app = S.app(r, { reload = false, workers = { ["x.lua"] = { name = "X" } } })
    local h1 = S.host_start(app, "h1")
    local id1 = h1:wait_ready()
    local h2 = S.host_start(app, "h2") -- writes tmp/workerhost.pid last: the local one
    local id2 = h2:wait_ready()
    -- v1 runs n = -1 fine
    r:push("default", { S.job({ args = "[{\"n\":-1}]" }) })
    assert.are.equal(1, S.wait_runs(app, 1, 5))
    assert.truthy(S.wait_for(function() return r:num("GET", "stat:processed") == 1 end, 3))
    assert.are.equal(0, r:num("GET", "stat:failed"))
    -- v2 fails for negative n
    H.write(app.root .. "/workers/x.lua", S.worker_source(app.out, { name = "X", fail_negative = true }))
    local out, status = H.run({ "--root", app.root, "reload" }, { cwd = app.root })
    assert.are.equal(0, status, out)
    assert.truthy(out:find("reloaded workerhost pid " .. h2.pid, 1, true), out)
    assert.truthy(out:find("sent RELOAD to 1 other workerhost process", 1, true), out)
    for _, h in ipairs({ h1, h2 }) do
      assert.truthy(S.wait_for(function() return h:log_has("reloaded: generation 2") end, 5), h:events())
    end
    assert.truthy(h1:log_has("RELOAD from " .. id1 .. "-signals"), h1:events())
    assert.is_false(h2:log_has("RELOAD from"), "the local host is reloaded once, by SIGHUP")
    -- both publish the generation (h1 at once, h2 at its next heartbeat)
    for _, id in ipairs({ id1, id2 }) do
      assert.truthy(S.wait_for(function()
        return (r:call("HGET", id, "info") or ""):find('"wh_generation":2', 1, true) ~= nil
      end, 7), id .. " info: " .. tostring(r:call("HGET", id, "info")))
    end
    -- workerhost stats shows each host's generation
    local text, st = H.run({ "--root", app.root, "stats" }, { cwd = app.root })
    assert.are.equal(0, st, text)
    assert.truthy(text:find("GENERATION", 1, true), text)
    for _, id in ipairs({ id1, id2 }) do
      assert.truthy(text:find(id:gsub("%p", "%%%0") .. "%s+%d+%s+%d+%s+%a+%s+2%s"), "generation 2 for " .. id .. ":\n" .. text)
    end
    -- every job now runs v2, on whichever host takes it
    local p = {}
    for i = 1, 20 do p[i] = S.job({ args = "[{\"n\":-1}]" }) end
    r:push("default", p)
    assert.truthy(S.wait_for(function() return r:num("GET", "stat:failed") == 20 end, 10),
      "failed: " .. r:num("GET", "stat:failed"))
    assert.are.equal(20, r:num("ZCARD", "retry"))
  end)

  it("reaches the hosts on the Redis when none runs in this app root", function()
    local r = S.redis_start()
    local app = S.app(r, { reload = false })
    local h = S.host_start(app)
    local id = h:wait_ready()
    os.remove(app.root .. "/tmp/workerhost.pid")
    local out, status = H.run({ "--root", app.root, "reload" }, { cwd = app.root })
    assert.are.equal(0, status, out)
    assert.truthy(out:find("sent RELOAD to 1 workerhost process", 1, true), out)
    assert.truthy(S.wait_for(function() return h:log_has("reloaded: generation 2") end, 5), h:events())
    assert.truthy(h:log_has("RELOAD from " .. id .. "-signals"))
    h:signal("TERM")
    assert.are.equal(0, h:wait_exit(10))
    -- nobody left: exit 5
    out, status = H.run({ "--root", app.root, "reload" }, { cwd = app.root })
    assert.are.equal(5, status, out)
    assert.truthy(out:find("no running host found", 1, true), out)
  end)
end)
