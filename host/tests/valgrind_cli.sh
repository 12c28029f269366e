#!/usr/bin/env bash
# valgrind_cli.sh BIN ROOT -- the command's main paths under valgrind: no
# invalid access, no definite or indirect leak (ctest: valgrind_cli).
set -u
BIN=$1 ROOT=$2
VG=(valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99)
fail=0
run() { # expected-status args...
  local want=$1; shift
  "${VG[@]}" "$BIN" --root "$ROOT" "$@" >/dev/null 2>/tmp/valgrind_cli.$$
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL (exit $got, expected $want): workerhost $*"; cat /tmp/valgrind_cli.$$; fail=1
  else
    echo "ok   workerhost $*"
  fi
}
run 0 check
run 0 --env test enqueue DownloadWorker '{"user_guid":"a","count":2}'
run 3 --env test enqueue DownloadWorker '{"user_guid":1}'
run 1 --env test enqueue PaymentWorker '{"account":"blocked-1","cents":5}'
run 4 --env test enqueue Nope '{}'
run 3 --env test enqueue DownloadWorker '{"user_guid":'
run 0 --env development enqueue NotifyWorker '{"channel":"sms","recipients":[{"user_guid":"a","wants_report":true}]}'
run 1 --env development enqueue PaymentWorker '{"account":"blocked-1","cents":5}'
run 2 --env nosuchenv check

# run: a reload by SIGHUP, one by the file watch, a failed one, then SIGTERM
# (kill -HUP, not `workerhost reload`: under valgrind /proc/PID/exe is not
# workerhost, so reload would rightly refuse the pid)
T=$(mktemp -d /tmp/valgrind_cli_run.XXXXXX)
mkdir -p "$T/config" "$T/workers" "$T/lib"
printf 'workers:\n  mode: BackgroundAsync\n  concurrency: 2\n  reload: true\n' > "$T/config/development.yaml"
printf "local wh = require 'workerhost'\nlocal u = require 'u'\nreturn wh.worker { perform = function() end }\n" \
  > "$T/workers/a_worker.lua"
printf 'return {}\n' > "$T/lib/u.lua"
attempt() { sed -n 's/^attempt //p' "$T/tmp/workerhost.reload" 2>/dev/null; }
wait_attempt() { for _ in $(seq 600); do [ "$(attempt)" = "$1" ] && return 0; sleep 0.1; done; return 1; }
"${VG[@]}" "$BIN" --root "$T" run >/dev/null 2>/tmp/valgrind_cli.$$ &
vpid=$!
ok=1
wait_attempt 0 || ok=0
kill -HUP $vpid; wait_attempt 1 || ok=0
printf 'syntax(\n' > "$T/workers/b_worker.lua"; wait_attempt 2 || ok=0
rm -f "$T/workers/b_worker.lua"; wait_attempt 3 || ok=0
kill -TERM $vpid
wait $vpid
got=$?
if [ $ok = 1 ] && [ $got = 0 ] && grep -q '^status ok' "$T/tmp/workerhost.reload"; then
  echo "ok   workerhost run (SIGHUP, file watch, a failed reload, SIGTERM)"
else
  echo "FAIL (exit $got, attempts seen: $ok): workerhost run with reloads"; cat /tmp/valgrind_cli.$$; fail=1
fi
rm -rf "$T"
rm -f /tmp/valgrind_cli.$$
exit $fail
