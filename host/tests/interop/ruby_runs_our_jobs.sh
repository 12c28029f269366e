#!/usr/bin/env bash
# ruby_runs_our_jobs.sh BIN SRC -- jobs that workerhost enqueues run in the real
# Ruby Sidekiq 6.4 (Debian's ruby-sidekiq), and Ruby's API reads them.
# SPDX-License-Identifier: MIT
#
# BIN is the workerhost command, SRC the repo root. On a private redis-server
# (free loopback port, no persistence) this:
#   1. enqueues with `workerhost enqueue`: checked jobs of Lua workers whose
#      classes Ruby also defines (named and positional arguments), a --bulk
#      file, a scheduled job (--in 1), and --unchecked jobs of a Ruby-only
#      class (single and --bulk from stdin); a refused job (exit 3) pushes
#      nothing;
#   2. reads them with Sidekiq's API (Queue, ScheduledSet, Stats, Job):
#      sizes, class, args, jid, latency;
#   3. runs `sidekiq -c 2` (host/tests/interop/interop_workers.rb) until every
#      job has run exactly once with the arguments given, reading the Ruby
#      process through `workerhost stats --json` meanwhile;
#   4. stops Sidekiq (TERM) and checks the counters it flushed through
#      `workerhost stats --json`.
# Exit 0 passed, 1 failed, 77 skipped (no redis-server, ruby or sidekiq).
# Every process it starts is stopped by PID; nothing is killed by name.
set -uo pipefail
# The environment this test needs, whatever the machine's: Ruby reads its
# sources (and the -e scripts below, which hold non-ASCII text) in the
# locale's encoding, and a minimal machine has none (US-ASCII).
export LANG=C.UTF-8 LC_ALL=C.UTF-8 TZ=UTC
BIN=${1:?usage: ruby_runs_our_jobs.sh BIN SRC}
SRC=${2:?usage: ruby_runs_our_jobs.sh BIN SRC}
HERE=$SRC/host/tests/interop
REDIS_SERVER=${REDIS_SERVER:-redis-server}
RUBY=${RUBY:-ruby}
SIDEKIQ=${SIDEKIQ:-sidekiq}

for x in "$REDIS_SERVER" "$RUBY" "$SIDEKIQ"; do
  command -v "$x" >/dev/null 2>&1 || { echo "SKIP: $x is not installed"; exit 77; }
done
"$RUBY" -e 'require "sidekiq"; exit(Sidekiq::VERSION.start_with?("6.") ? 0 : 1)' 2>/dev/null ||
  { echo "SKIP: this test is for Sidekiq 6.x"; exit 77; }

TMP=$(mktemp -d /tmp/wh-interop.XXXXXX)
PIDS=()
FAILED=0

log() { printf '[interop] %s\n' "$*"; }
fail() { printf '[interop] FAIL: %s\n' "$*"; FAILED=1; }

alive() { # true while PID exists and is not a zombie
  local st
  st=$(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$st" && "$st" != Z ]]
}

stop_pid() { # PID: TERM, up to 15 s, then KILL; reaps it
  local pid=$1 i
  alive "$pid" && kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 300; i++)); do alive "$pid" || break; sleep 0.05; done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  if [[ $FAILED != 0 && -n "${KEEP:-}" ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# ---- a private redis-server on a free loopback port ----
PORT=
for ((try = 0; try < 10; try++)); do
  port=$((20000 + RANDOM % 40000))
  : >"$TMP/redis.log"
  "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    --daemonize no --logfile "$TMP/redis.log" </dev/null >/dev/null 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for ((i = 0; i < 100; i++)); do
    # our own log says it is ready: the port is ours, not another server's
    if grep -q "Ready to accept connections" "$TMP/redis.log"; then PORT=$port; break 2; fi
    alive "$pid" || break
    sleep 0.05
  done
  stop_pid "$pid"
done
[[ -n "$PORT" ]] || { echo "FAIL: could not start $REDIS_SERVER"; exit 1; }
export REDIS_URL="redis://127.0.0.1:$PORT/0"
log "redis-server on port $PORT"

# ---- an app whose Lua workers share two class names with the Ruby ones ----
APP=$TMP/app
mkdir -p "$APP/config" "$APP/workers"
cat >"$APP/config/test.yaml" <<'YAML'
workers:
  mode: BackgroundQueue
  scripts: workers
queue:
  uri: ${REDIS_URL}
logger:
  level: warn
YAML
cat >"$APP/workers/echo_worker.lua" <<'LUA'
local wh = require "workerhost"
return wh.worker { args = { name = "string", n = "integer" }, perform = function() end }
LUA
cat >"$APP/workers/pos_worker.lua" <<'LUA'
local wh = require "workerhost"
return wh.worker { queue = "positional", args = { "string", "integer" }, perform = function() end }
LUA

wh() { "$BIN" --root "$APP" --env test "$@"; }
EXPECT=$TMP/expected.jsonl # {"worker":..,"jid":..,"args":..} per job we enqueue
: >"$EXPECT"
expect() { # WORKER ARGS_AS_RUBY_SEES_THEM JID...
  local w=$1 a=$2 j
  shift 2
  for j in "$@"; do printf '{"worker":"%s","jid":"%s","args":%s}\n' "$w" "$j" "$a" >>"$EXPECT"; done
}
check_jid() { [[ "$1" =~ ^[0-9a-f]{24}$ ]] || fail "not a jid: '$1' ($2)"; }

# ---- 1. enqueue ----
J1=$(wh enqueue EchoWorker '{"name":"checked","n":1}') || fail "enqueue EchoWorker: exit $?"
check_jid "$J1" EchoWorker
expect EchoWorker '[{"name":"checked","n":1}]' "$J1"

J2=$(wh enqueue PosWorker '["pos",2]') || fail "enqueue PosWorker: exit $?"
check_jid "$J2" PosWorker
expect PosWorker '["pos",2]' "$J2"

J3=$(wh enqueue --unchecked RubyOnlyWorker '["ruby",3,{"k":null},[1.5,"é"]]') || fail "enqueue --unchecked: exit $?"
check_jid "$J3" RubyOnlyWorker
expect RubyOnlyWorker '["ruby",3,{"k":null},[1.5,"é"]]' "$J3"

printf '{"name":"b1","n":1}\n\n{"name":"b2","n":2}\n{"name":"b3","n":3}\n' >"$TMP/bulk.jsonl"
mapfile -t JB < <(wh enqueue EchoWorker --bulk "$TMP/bulk.jsonl")
[[ ${#JB[@]} == 3 ]] || fail "--bulk printed ${#JB[@]} jids, expected 3"
for k in 0 1 2; do
  check_jid "${JB[k]:-}" "bulk $k"
  expect EchoWorker "[{\"name\":\"b$((k + 1))\",\"n\":$((k + 1))}]" "${JB[k]:-}"
done

mapfile -t JU < <(printf '["u1"]\n["u2",{"x":[]}]\n' | wh enqueue --unchecked --bulk - RubyOnlyWorker)
[[ ${#JU[@]} == 2 ]] || fail "--unchecked --bulk printed ${#JU[@]} jids, expected 2"
expect RubyOnlyWorker '["u1"]' "${JU[0]:-}"
expect RubyOnlyWorker '["u2",{"x":[]}]' "${JU[1]:-}"

J4=$(wh enqueue --in 1 EchoWorker '{"name":"later","n":4}') || fail "enqueue --in 1: exit $?"
check_jid "$J4" scheduled
expect EchoWorker '[{"name":"later","n":4}]' "$J4"

out=$(wh enqueue EchoWorker '{"name":5,"n":1}' 2>&1)
rc=$?
[[ $rc == 3 ]] || fail "a refused job exits $rc, expected 3: $out"
[[ "$out" == *"EchoWorker: args.name: expected string, got integer"* ]] || fail "refusal message: $out"
out=$(wh enqueue RubyOnlyWorker '["x"]' 2>&1)
rc=$?
[[ $rc == 4 ]] || fail "an unknown class without --unchecked exits $rc, expected 4: $out"
NJOBS=$(wc -l <"$EXPECT")
log "enqueued $NJOBS jobs"

# ---- 2. Ruby's API reads what we pushed ----
INTEROP_JIDS="$J1 $J2 $J3 $J4" "$RUBY" -e '
  require "sidekiq/api"
  Redis.sadd_returns_boolean = false if Redis.respond_to?(:sadd_returns_boolean=)
  j1, j2, j3, j4 = ENV["INTEROP_JIDS"].split
  errs = []
  d = Sidekiq::Queue.new("default")
  errs << "default size #{d.size}, expected 7" unless d.size == 7
  errs << "positional size" unless Sidekiq::Queue.new("positional").size == 1
  errs << "latency #{d.latency}" unless d.latency >= 0 && d.latency < 60
  errs << "queues #{Sidekiq::Queue.all.map(&:name).sort}" unless Sidekiq::Queue.all.map(&:name).sort == %w[default positional]
  job = d.find_job(j1) or errs << "Queue#find_job(#{j1}) found nothing"
  if job
    errs << "klass #{job.klass}" unless job.klass == "EchoWorker"
    errs << "args #{job.args}" unless job.args == [{"name" => "checked", "n" => 1}]
    errs << "enqueued_at #{job.enqueued_at}" unless job.enqueued_at.is_a?(Time) && (Time.now - job.enqueued_at).abs < 60
    errs << "created_at #{job.created_at}" unless (Time.now - job.created_at).abs < 60
    errs << "retry #{job["retry"].inspect}" unless job["retry"] == 25
  end
  r = d.find_job(j3)
  errs << "unchecked job #{r&.item}" unless r && r.args == ["ruby", 3, {"k" => nil}, [1.5, "é"]] && r["retry"] == true
  ss = Sidekiq::ScheduledSet.new
  errs << "scheduled size #{ss.size}" unless ss.size == 1
  s = ss.find_job(j4)
  errs << "scheduled job" unless s && s.klass == "EchoWorker" && !s.item.key?("enqueued_at") && (s.at - Time.now) < 5
  st = Sidekiq::Stats.new
  errs << "Stats enqueued #{st.enqueued}" unless st.enqueued == 8
  errs << "Stats scheduled_size #{st.scheduled_size}" unless st.scheduled_size == 1
  puts errs.empty? ? "ok" : errs.join("; ")
' >"$TMP/api.out" 2>"$TMP/api.err"
if [[ "$(cat "$TMP/api.out")" != ok ]]; then
  fail "Sidekiq API: $(cat "$TMP/api.out") $(tail -n 3 "$TMP/api.err")"
else
  log "Sidekiq's API reads our queues, jobs and schedule"
fi

# ---- 3. Ruby Sidekiq runs them ----
export INTEROP_OUT=$TMP/ran.jsonl
: >"$INTEROP_OUT"
setsid "$SIDEKIQ" -r "$HERE/interop_workers.rb" -c 2 -q default -q positional -t 5 \
  >"$TMP/sidekiq.log" 2>&1 </dev/null &
SKPID=$!
PIDS+=("$SKPID")
saw_process=0
for ((i = 0; i < 600; i++)); do # up to 30 s (the scheduled job waits for Sidekiq's poller)
  if [[ $saw_process == 0 ]] && wh stats --json 2>/dev/null | grep -q '"concurrency":2,'; then saw_process=1; fi
  [[ $(wc -l <"$INTEROP_OUT") -ge $NJOBS && $saw_process == 1 ]] && break
  alive "$SKPID" || { fail "sidekiq exited: $(tail -n 20 "$TMP/sidekiq.log")"; break; }
  sleep 0.05
done
[[ $saw_process == 1 ]] || fail "workerhost stats never showed the Sidekiq process (concurrency 2)"
log "Sidekiq ran $(wc -l <"$INTEROP_OUT") of $NJOBS jobs"
stop_pid "$SKPID"

"$RUBY" -rjson -e '
  want = File.readlines(ARGV[0]).map { |l| JSON.parse(l) }
  got = File.readlines(ARGV[1]).map { |l| JSON.parse(l) }
  errs = []
  want.each do |w|
    runs = got.select { |g| g["jid"] == w["jid"] }
    errs << "#{w["worker"]} #{w["jid"]} ran #{runs.size} times" unless runs.size == 1
    errs << "#{w["jid"]}: got #{runs[0]}, expected #{w}" if runs.size == 1 && runs[0] != w
  end
  errs << "#{got.size} runs for #{want.size} jobs" unless got.size == want.size
  puts errs.empty? ? "ok" : errs.join("\n")
' "$EXPECT" "$INTEROP_OUT" >"$TMP/check.out" 2>&1
if [[ "$(cat "$TMP/check.out")" != ok ]]; then
  fail "what Ruby ran: $(cat "$TMP/check.out")"
  tail -n 20 "$TMP/sidekiq.log"
else
  log "every job ran once in Ruby, with the arguments given"
fi

# ---- 4. the counters Sidekiq flushed at exit, read by workerhost stats ----
stats=$(wh stats --json) || fail "workerhost stats: exit $?"
for want in "\"processed\":$NJOBS," '"failed":0,' '"enqueued":0,' '"scheduled":0,' '"processes":[]'; do
  [[ "$stats" == *"$want"* ]] || fail "stats after Sidekiq stopped: missing $want in $stats"
done

# Redis unreachable: exit 5, fast, password not shown
out=$(REDIS_URL="redis://:hunter2@127.0.0.1:1/0" "$BIN" --root "$APP" --env test enqueue EchoWorker '{"name":"x","n":1}' 2>&1)
rc=$?
[[ $rc == 5 ]] || fail "Redis unreachable: exit $rc, expected 5 ($out)"
[[ "$out" == *"redis://:***@127.0.0.1:1/0"* && "$out" != *hunter2* ]] || fail "unreachable message: $out"

if [[ $FAILED == 0 ]]; then log "passed"; exit 0; fi
exit 1
