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
rm -f /tmp/valgrind_cli.$$
exit $fail
