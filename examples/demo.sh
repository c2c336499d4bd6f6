#!/usr/bin/env bash
# nucleus-trio as PID 1 of a fresh PID namespace: it reaps an orphaned zombie
# and forwards a SIGTERM sent from outside to the workload, then exits with
# the workload's status.
set -euo pipefail
cd "$(dirname "$0")/.."
INIT=.venv/bin/nucleus-trio

if unshare --pid --fork --mount-proc true 2>/dev/null; then
    NS=(unshare --pid --fork --kill-child --mount-proc)
else
    # Not root: a user namespace maps us to root inside.
    NS=(unshare --user --map-root-user --pid --fork --kill-child --mount-proc)
fi

WORKLOAD='
echo "workload: I am pid $$ in the new namespace; pid 1 is $(cat /proc/1/comm)"
sh -c "sleep 0.3 &"          # the inner sh exits at once: its sleep is orphaned
echo "workload: left an orphan behind (a sleep that will exit in 0.3 s)"
sleep 0.6
echo "workload: zombies now: $(ps -eo stat= | grep -c "^Z" || true)"
trap "echo \"workload: got SIGTERM, exiting with 42\"; exit 42" TERM
echo "workload: ready for a signal"
while :; do sleep 0.05; done
'

echo "demo: starting: ${NS[*]} $INIT -v -w -- sh -c WORKLOAD"
"${NS[@]}" "$INIT" -v -w -- sh -c "$WORKLOAD" 2>&1 &
NS_PID=$!
# The init is unshare's only child; wait until the workload says it is ready.
sleep 1.5
INIT_PID=$(cat /proc/"$NS_PID"/task/*/children | awk '{print $1}')
echo "demo: sending SIGTERM to the init (pid $INIT_PID outside the namespace)"
kill -TERM "$INIT_PID"
set +e
wait "$NS_PID"
CODE=$?
set -e
echo "demo: the init exited with $CODE, the workload's own status"
[ "$CODE" -eq 42 ]
