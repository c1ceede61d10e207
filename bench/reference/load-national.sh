#!/usr/bin/env bash
# The national-size reference data load (docs/benchmarks.md): generates
# synthetic files of the national sizes (make-national.py), starts the
# project's moto emulator on a free port, loads them with
# `hub-local reference load`, and prints the load's own report, the
# emulator's memory and the wall time.
#
#   bench/reference/load-national.sh [ROWS]      (default 2700000)
#
# The files go to bench/reference/out (BENCH_REFERENCE_DIR moves them;
# about 1.5 GB for the full size) and are made again only when ROWS changes.
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${1:-2700000}
out=${BENCH_REFERENCE_DIR:-bench/reference/out}

if [[ "$(cat "$out/rows" 2>/dev/null)" != "$rows" ]]; then
  echo "==> generating $rows ONSPD rows in $out"
  python3 bench/reference/make-national.py "$out" "$rows"
  echo "$rows" > "$out/rows"
fi
ls -l "$out"

echo "==> cargo build -p hub-local"
cargo build --quiet -p hub-local --bins

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" > /dev/null 2>&1 &
moto=$!
trap 'kill "$moto" 2> /dev/null || true' EXIT
for _ in $(seq 100); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
  sleep 0.1
done

echo "==> hub-local reference load ($(nproc) cores)"
start=$(date +%s.%N)
status=0
target/debug/hub-local reference load \
  --sub-icb "$out/sub-icb.csv" --onspd "$out/onspd.csv" --epraccur "$out/epraccur.csv" \
  --endpoint "http://127.0.0.1:$port" --table ReferenceTable --create-table \
  --progress-every 250000 || status=$?
end=$(date +%s.%N)
echo "wall time: $(python3 -c "print(f'{$end - $start:.0f} s')"), exit status $status"
echo "emulator resident memory: $(( $(ps -o rss= -p "$moto") / 1024 )) MiB"
exit "$status"
