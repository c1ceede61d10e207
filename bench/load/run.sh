#!/usr/bin/env bash
# Runs the load test against a local hub of its own: starts hub-local on
# its own ports with a scratch state folder, runs bench/load/load.py against
# it with this script's arguments, then stops the hub.
#
#   bench/load/run.sh --minutes 10 --rate 5              # docs/benchmarks.md
#   LOAD_FAULTS=1 bench/load/run.sh --minutes 10 --rate 5 # with the fault proxy
#
# LOAD_FAULTS=1 starts the hub with its fault proxy (no rules) and gives
# load.py the proxy's admin URL (--faults), so that it injects faults as it
# publishes. Ports: LOAD_API_PORT, LOAD_EMULATOR_PORT, LOAD_FAULT_PORT,
# each a free port the system picks when not set.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash infra/setup.sh --binaries-only > /dev/null

# A port nothing holds now, as the system picks it.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
api_port=${LOAD_API_PORT:-$(free_port)}
emulator_port=${LOAD_EMULATOR_PORT:-$(free_port)}
fault_port=${LOAD_FAULT_PORT:-$(free_port)}
state=$(mktemp -d)
log="$state/hub.log"
hub_env=(HUB_API_PORT="$api_port" HUB_EMULATOR_PORT="$emulator_port" HUB_LOCAL_STATE_DIR="$state")
faults=()
if [ "${LOAD_FAULTS:-}" = 1 ]; then
  hub_env+=(HUB_FAULTS= HUB_FAULT_PORT="$fault_port")
  faults=(--faults "http://127.0.0.1:$fault_port/_faults")
fi

env "${hub_env[@]}" target/debug/hub-local run --template template.yaml > "$log" 2>&1 &
hub=$!
trap 'kill -INT "$hub" 2> /dev/null; wait "$hub" 2> /dev/null; rm -rf "$state"' EXIT
for _ in $(seq 1 180); do
  grep -q '^Ready' "$log" && break
  kill -0 "$hub" 2> /dev/null || { echo "the hub stopped:"; tail -20 "$log"; exit 1; }
  sleep 1
done
grep -q '^Ready' "$log" || { echo "the hub did not start in 180 s:"; tail -20 "$log"; exit 1; }

.venv/bin/python -u bench/load/load.py --api "http://127.0.0.1:$api_port" \
  --emulator "http://127.0.0.1:$emulator_port" --state "$state" "${faults[@]}" "$@"
