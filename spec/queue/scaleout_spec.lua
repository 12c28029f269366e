-- BackgroundQueue scale-out: three host processes on one Redis drain 20,000
-- pre-pushed jobs together, each job runs once, and 2,000 due scheduled and
-- retry jobs are moved once. Starts its own redis-server.
local S = require "spec.queue.support"

describe("BackgroundQueue scale-out", function()
  after_each(function() S.cleanup() end)

  it("three hosts drain 20,000 jobs together, each job once", function()
    local r = S.redis_start()
    local app = S.app(r, {
      concurrency = 2,
      log_level = "warn",
      workers = { ["x.lua"] = { name = "X", loop = 20000 } },
    })
    local payloads, jids = S.jobs(20000)
    r:push("default", payloads)
    -- and 2,000 due at once in schedule and retry, for three schedulers
    local due = S.now() + 1
    local lines = {}
    for i = 1, 2000 do
      local jid = S.jid()
      jids[#jids + 1] = jid
      local p
      if i % 2 == 0 then
        lines[#lines + 1] = ("ZADD schedule %.6f %s"):format(due, S.sq(S.job({ jid = jid, enqueued_at = false })))
      else
        p = S.job({ jid = jid, extra = '"error_message":"x","error_class":"X","failed_at":1700000001.5,"retry_count":0' })
        lines[#lines + 1] = ("ZADD retry %.6f %s"):format(due, S.sq(p))
      end
    end
    r:pipe(lines)
    assert.are.equal(20000, r:num("LLEN", "queue:default"))
    local hosts = {}
    for i = 1, 3 do hosts[i] = S.host_start(app, "h" .. i) end
    local t0 = S.now()
    local ok = S.wait_for(function() return S.run_count(app) >= 22000 end, 90, 0.1)
    local took = S.now() - t0
    S.sleep(0.3)
    local list, count, n = S.runs(app)
    assert.truthy(ok, n .. " of 22000 runs")
    assert.are.equal(22000, n)
    for _, jid in ipairs(jids) do
      if count[jid] ~= 1 then error(("job %s ran %s times"):format(jid, tostring(count[jid]))) end
    end
    local by_pid = {}
    for _, run in ipairs(list) do by_pid[run.pid] = (by_pid[run.pid] or 0) + 1 end
    local shares = {}
    for i = 1, 3 do
      shares[i] = by_pid[tostring(hosts[i].pid)] or 0
      assert.truthy(shares[i] > 0, "host " .. i .. " ran some of the jobs")
    end
    assert.truthy(S.wait_for(function() return r:num("GET", "stat:processed") == 22000 end, 5))
    assert.are.equal(0, r:num("GET", "stat:failed"))
    assert.are.equal(0, r:num("LLEN", "queue:default"))
    assert.are.equal(0, S.inflight_total(r))
    assert.are.equal(0, r:num("ZCARD", "schedule"))
    assert.are.equal(0, r:num("ZCARD", "retry"))
    for i = 1, 3 do
      assert.truthy(hosts[i]:alive())
      hosts[i]:signal("TERM")
    end
    for i = 1, 3 do assert.are.equal(0, hosts[i]:wait_exit(10)) end
    assert.are.equal(0, r:num("SCARD", "processes"))
    assert.are.equal(0, r:num("SCARD", "wh:registry"))
    print(("\n[scale-out] 22000 jobs on 3 hosts in %.2f s (%s)"):format(took, table.concat(shares, "/")))
  end)
end)
