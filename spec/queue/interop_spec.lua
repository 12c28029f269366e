-- BackgroundQueue with the real Ruby Sidekiq 6.4 (Debian's ruby-sidekiq):
-- jobs pushed by Sidekiq::Client run in our Lua workers, and Sidekiq's API
-- (Stats, Stats::History, Queue, RetrySet, DeadSet, ProcessSet, Workers,
-- and the Web UI's Retry, Quiet and Stop) reads and drives our state. Each
-- test starts its own redis-server. Pending when ruby or Sidekiq 6 is missing.
local S = require "spec.queue.support"
local H = S.H

local function have_sidekiq6()
  local _, status = H.sh("command -v ruby >/dev/null && "
    .. "ruby -e 'require \"sidekiq\"; exit(Sidekiq::VERSION.start_with?(\"6.\") ? 0 : 1)'")
  return status == 0
end

local PRELUDE = [[
require "json"
require "sidekiq"
require "sidekiq/api"
# redis-rb 4.8 warns about sadd's return value on every push (see ../shared/bench/peers/sidekiq)
Redis.sadd_returns_boolean = false if Redis.respond_to?(:sadd_returns_boolean=)
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }
Sidekiq.logger.level = Logger::WARN
]]

-- Runs a Ruby script against redis r (env: extra variables); returns the
-- JSON it prints on its last line, decoded.
local function ruby(r, body, env)
  local dir = S.tmpdir()
  H.write(dir .. "/t.rb", PRELUDE .. body)
  local vars = ""
  for k, v in pairs(env or {}) do vars = vars .. k .. "=" .. H.q(v) .. " " end
  local out, status = H.sh(("cd %s && %sREDIS_URL=%s timeout 30 ruby t.rb 2>%s"):format(H.q(dir), vars,
    H.q(r:uri()), H.q(dir .. "/err")))
  assert(status == 0, "ruby failed (" .. tostring(status) .. "): " .. out .. (H.read(dir .. "/err") or ""))
  local last = out:match("([^\n]+)\n?$")
  return S.decode(assert(last, "ruby printed nothing: " .. (H.read(dir .. "/err") or "")))
end

local describe_ruby = have_sidekiq6() and describe or pending

describe_ruby("BackgroundQueue with Ruby Sidekiq 6.4", function()
  local r
  before_each(function() r = S.redis_start() end)
  after_each(function() S.cleanup() end)

  it("runs jobs pushed by Sidekiq::Client.push, push_bulk and push with at", function()
    local app = S.app(r, {
      workers = {
        ["x.lua"] = { name = "X" },
        ["pos.lua"] = { name = "Pos", queue = "critical", args = '{ "string", "integer" }' },
      },
    })
    local h = S.host_start(app)
    h:wait_ready()
    local got = ruby(r, [[
jid = Sidekiq::Client.push("class" => "X", "args" => [{ "n" => 1 }])
bulk = Sidekiq::Client.push_bulk("class" => "X", "args" => (2..11).map { |i| [{ "n" => i }] })
pos = Sidekiq::Client.push("class" => "Pos", "args" => ["a", 2], "queue" => "critical")
at = Sidekiq::Client.push("class" => "X", "args" => [{ "n" => 12 }], "at" => Time.now.to_f + 0.5)
puts JSON.generate(jid: jid, bulk: bulk, pos: pos, at: at)
]])
    local want = { got.jid, got.pos, got.at }
    for _, j in ipairs(got.bulk) do want[#want + 1] = j end
    assert.are.equal(13, #want)
    assert.are.equal(13, S.wait_runs(app, 13, 5), h:events())
    S.sleep(0.2)
    local list, count, n = S.runs(app)
    assert.are.equal(13, n)
    for _, j in ipairs(want) do assert.are.equal(1, count[j], "runs of " .. j) end
    for _, run in ipairs(list) do
      assert.are.equal(run.jid == got.pos and "critical" or "default", run.queue)
    end
    assert.are.equal(13, r:num("GET", "stat:processed"))
    assert.are.equal(0, r:num("ZCARD", "schedule"))
  end)

  it("shows our counters, queues, retries, dead jobs and process to Sidekiq's API, which drives them", function()
    local app = S.app(r, { workers = { ["x.lua"] = { name = "X", record = "start", fail_negative = true } } })
    local h = S.host_start(app)
    local id = h:wait_ready()
    local good = S.jobs(3)
    local failing = S.job({ args = '[{"n":-1}]' })
    local fjid = S.decode(failing).jid
    local dying = S.job({ args = '[{"n":-2}]', retry = "0" })
    local djid = S.decode(dying).jid
    r:push("default", { good[1], good[2], good[3], failing, dying })
    local now = S.now()
    local parked, parked_jids = S.jobs(2, { queue = "parked", enqueued_at = ("%.6f"):format(now - 10) })
    r:push("parked", parked) -- a queue this host does not fetch
    assert.truthy(S.wait_for(function() return r:num("GET", "stat:processed") == 5 end, 5))

    local st = ruby(r, [[
s = Sidekiq::Stats.new
q = Sidekiq::Queue.new("parked")
job_h = ->(j) { { jid: j.jid, klass: j.klass, args: j.args, queue: j.queue, at: j.at&.to_f,
  error_message: j["error_message"], error_class: j["error_class"], retry_count: j["retry_count"],
  failed_at: j["failed_at"], created_at: j.created_at.to_f, enqueued_at: j.enqueued_at&.to_f } }
puts JSON.generate(
  processed: s.processed, failed: s.failed, retry_size: s.retry_size, dead_size: s.dead_size,
  scheduled_size: s.scheduled_size, processes_size: s.processes_size, enqueued: s.enqueued,
  workers_size: s.workers_size, queues: s.queues,
  history_processed: Sidekiq::Stats::History.new(1).processed.values,
  history_failed: Sidekiq::Stats::History.new(1).failed.values,
  parked_size: q.size, parked_latency: q.latency, parked_jids: q.map(&:jid),
  retries: Sidekiq::RetrySet.new.map(&job_h), dead: Sidekiq::DeadSet.new.map(&job_h),
  processes: Sidekiq::ProcessSet.new.map { |p|
    { identity: p.identity, hostname: p["hostname"], pid: p["pid"], concurrency: p["concurrency"],
      queues: p["queues"], busy: p["busy"], quiet: p["quiet"], stopping: p.stopping?,
      started_at: p["started_at"], beat: p["beat"], labels: p.labels, tag: p.tag } },
  workers: Sidekiq::Workers.new.size)
]])
    assert.are.equal(5, st.processed)
    assert.are.equal(2, st.failed)
    assert.are.equal(1, st.retry_size)
    assert.are.equal(1, st.dead_size)
    assert.are.equal(0, st.scheduled_size)
    assert.are.equal(1, st.processes_size)
    assert.are.equal(2, st.enqueued)
    assert.are.equal(0, st.workers_size)
    assert.are.same({ parked = 2, default = 0 }, st.queues)
    assert.are.same({ 5 }, st.history_processed)
    assert.are.same({ 2 }, st.history_failed)
    assert.are.equal(2, st.parked_size)
    assert.truthy(st.parked_latency >= 9 and st.parked_latency < 30, "latency " .. st.parked_latency)
    assert.are.same({ parked_jids[2], parked_jids[1] }, st.parked_jids)

    assert.are.equal(1, #st.retries)
    local rj = st.retries[1]
    assert.are.equal(fjid, rj.jid)
    assert.are.equal("X", rj.klass)
    assert.are.same({ { n = -1 } }, rj.args)
    assert.are.equal("default", rj.queue)
    assert.truthy(rj.error_message:find("boom %-1"), rj.error_message)
    assert.are.equal("WorkerHost::LuaError", rj.error_class)
    assert.are.equal(0, rj.retry_count)
    assert.truthy(rj.at - rj.failed_at >= 15 - 0.01 and rj.at - rj.failed_at <= 24.01)
    assert.truthy(math.abs(rj.failed_at - now) < 10)

    assert.are.equal(1, #st.dead)
    assert.are.equal(djid, st.dead[1].jid)
    assert.are.equal("WorkerHost::LuaError", st.dead[1].error_class)
    assert.truthy(st.dead[1].error_message:find("boom %-2"))

    assert.are.equal(1, #st.processes)
    local p = st.processes[1]
    assert.are.equal(id, p.identity)
    assert.are.equal(h.pid, p.pid)
    assert.are.equal(2, p.concurrency)
    assert.are.same({ "critical", "default" }, p.queues)
    assert.are.equal(0, p.busy)
    assert.are.equal("false", p.quiet)
    assert.is_false(p.stopping)
    assert.truthy(math.abs(p.beat - S.now()) < 10)
    assert.are.equal(0, st.workers)

    -- SortedEntry#retry (the Web UI's "Retry Now") pushes the failed job back;
    -- it runs (and fails) here again. (Not RetrySet#retry_all: it loops while
    -- the set is not empty, and this job is back in it within a millisecond.)
    ruby(r, [[Sidekiq::RetrySet.new.find_job(ENV.fetch("JID")).retry; puts "{}"]], { JID = fjid })
    assert.truthy(S.wait_for(function()
      local _, c = S.runs(app)
      return c[fjid] == 2 and r:num("GET", "stat:failed") == 3
    end, 5), "the retried job ran again; log:\n" .. h:events())
    local again = ruby(r, [[puts JSON.generate(Sidekiq::RetrySet.new.map { |j|
      { jid: j.jid, retry_count: j["retry_count"], retried_at: j["retried_at"] } })]])
    assert.are.equal(1, #again)
    assert.are.equal(fjid, again[1].jid)
    assert.are.equal(0, again[1].retry_count)
    assert.is_number(again[1].retried_at)

    -- the Web UI's Quiet and Stop buttons: TSTP and TERM through
    -- <identity>-signals, read at the next heartbeat (every 5 s)
    ruby(r, [[Sidekiq::ProcessSet.new.each(&:quiet!); puts "{}"]])
    assert.truthy(S.wait_for(function() return h:log_has("TSTP from") end, 7), "TSTP read; log:\n" .. h:events())
    local late, late_jids = S.jobs(1)
    r:push("default", late)
    ruby(r, [[Sidekiq::ProcessSet.new.each(&:stop!); puts "{}"]])
    assert.are.equal(0, h:wait_exit(8), "stopped after TERM; log:\n" .. h:events())
    local _, c = S.runs(app)
    assert.is_nil(c[late_jids[1]], "a quiet host starts no new job")
    assert.are.same(late, r:lines("LRANGE", "queue:default", "0", "-1"))
    local after = ruby(r, [[puts JSON.generate(size: Sidekiq::ProcessSet.new.size)]])
    assert.are.equal(0, after.size)
  end)
end)
