#!/usr/bin/env bash
# The test suite. Two depths:
#   infra/test.sh --fast  formatting, clippy, template and OpenAPI checks,
#                         fixtures, and every cargo test: unit, handler,
#                         contract, adapter and end-to-end (the README's fast
#                         command; its time is in the README)
#   infra/test.sh         all of that, then the benchmarks once, the load and
#                         fuzz smoke runs and `sam build` (what CI runs:
#                         .ci/run)
# The end-to-end tests start the emulator and the local hub themselves, on
# free ports, and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0

# Each stage's header gives the seconds since the start, so a run's log
# shows where its time went.
stage() { echo "==> [${SECONDS} s] $*"; }

fast=false
case "${1:-}" in
  --fast) fast=true ;;
  "") ;;
  *) echo "usage: infra/test.sh [--fast]" >&2; exit 2 ;;
esac

bash infra/setup.sh

scratch=$(mktemp -d)
background=()
cleanup() {
  for pid in "${background[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "building every test (cargo test --no-run)"
cargo test --workspace --no-run --message-format=json-render-diagnostics > "$scratch/build.json"
# The tests crate's binaries, by name and path (the end-to-end one runs
# from here; the others through cargo below, which cannot leave one out).
python3 - "$scratch/build.json" > "$scratch/test-binaries" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    message = json.loads(line)
    if (message.get("reason") == "compiler-artifact"
            and message["package_id"].split("#")[0].endswith("/tests")
            and message["target"]["kind"] == ["test"]):
        print(message["target"]["name"], message["executable"])
EOF
if [[ "$(cut -d' ' -f1 "$scratch/test-binaries" | sort | tr '\n' ' ')" != "adapters contract e2e handlers " ]]; then
  echo "the tests crate's test binaries changed: update infra/test.sh" >&2
  cat "$scratch/test-binaries" >&2
  exit 1
fi
e2e=$(awk '$1 == "e2e" { print $2 }' "$scratch/test-binaries")

# The end-to-end tests spend most of their time waiting for the local stack,
# so they run in the background while the checks and the other tests use
# the processors. The three longest (each two to five minutes on this
# 2-core machine) run in processes of their own from the start: in name
# order they would start last and set the run's length.
long_tests=(
  routing_model::one_seed_through_the_local_stack
  routing_model::the_hub_delivers_what_the_model_expects
  schemathesis::schemathesis_finds_no_server_error_and_no_answer_off_the_description
)
e2e_logs=()
start_e2e() {
  local log="$scratch/e2e-$1.txt"
  shift
  (cd tests && exec "$e2e" "$@") > "$log" 2>&1 &
  background+=("$!")
  e2e_logs+=("$log")
}
stage "the end-to-end tests start in the background"
skips=()
for test in "${long_tests[@]}"; do
  start_e2e "${test##*::}" --exact "$test"
  skips+=(--skip "$test")
done
start_e2e rest --test-threads=3 "${skips[@]}"

stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

stage "the hub crate's layers import inwards only (infra/tools/layers.py)"
python3 infra/tools/layers.py shared/src

stage "template lint (cfn-lint, sam validate --lint)"
.venv/bin/cfn-lint template.yaml
.venv/bin/sam validate --lint --region eu-west-2 --template template.yaml

stage "openapi.yaml is a valid OpenAPI document"
.venv/bin/openapi-spec-validator openapi.yaml

stage "the emulator's transaction rollback (infra/emulator.py --self-test)"
.venv/bin/python infra/emulator.py --self-test

stage "fixtures and sample events are what the generators produce"
bash infra/tools/make-json-fixtures.sh "$scratch" > /dev/null
for folder in nems-json derived nems-spec-json; do
  diff -r "$scratch/$folder" "events/$folder" --exclude NOTICE.md \
    || { echo "events/$folder is stale: run infra/tools/make-json-fixtures.sh"; exit 1; }
done
python3 infra/tools/make-sample-events.py "$scratch/apigw"
diff -r "$scratch/apigw" events/apigw \
  || { echo "events/apigw is stale: run infra/tools/make-sample-events.py"; exit 1; }

stage "cargo test: unit, handler, contract and adapter tests"
cargo test --workspace --exclude e2e-tests
cargo test -p e2e-tests --test handlers --test contract --test adapters

stage "the end-to-end tests (started in the background)"
failed=false
for index in "${!background[@]}"; do
  log="${e2e_logs[$index]}"
  if wait "${background[$index]}" && grep -q "^test result: ok" "$log"; then
    grep "^test result" "$log" | sed "s|^|$(basename "$log" .txt): |"
  else
    cat "$log"
    failed=true
  fi
done
background=()
$failed && { echo "end-to-end tests failed" >&2; exit 1; }
# Each long test ran: a renamed one must not pass as zero tests.
for test in "${long_tests[@]}"; do
  grep -q "^test result: ok. 1 passed" "$scratch/e2e-${test##*::}.txt" \
    || { echo "$test did not run" >&2; exit 1; }
done

if $fast; then
  stage "the fast checks passed"
  exit 0
fi

# Benchmarks are built and run once so they cannot rot: criterion in test
# mode (each benchmark once), the Lambda init and memory scripts on two debug
# binaries beside the hello-world baseline, the cost model. The figures of
# docs/benchmarks.md come from the release builds, not from this.
stage "benchmarks build and run once"
cargo test -p hub --benches --quiet
CARGO_TARGET_DIR=target/bench-hello cargo build --quiet --locked \
  --manifest-path bench/lambda/hello/Cargo.toml
python3 bench/lambda/init.py --runs 1 --bin-dir target/debug \
  --hello target/bench-hello/debug/hello-lambda --only publish,dispatch > /dev/null
python3 bench/lambda/memory.py --runs 1 --bin-dir target/debug \
  --hello target/bench-hello/debug/hello-lambda --only publish > /dev/null
python3 bench/cost/cost.py > /dev/null
# The load test's script against a hub of its own: 15 s at 4 events/s,
# every delivery checked against its record (it exits 1 on any miss).
bash bench/load/run.sh --minutes 0.25 --rate 4 --children 12 --settle 60 > "$scratch/load.txt" 2>&1 \
  || { cat "$scratch/load.txt"; exit 1; }
sed -n 2,4p "$scratch/load.txt"
python3 -m py_compile bench/python-parse/*.py bench/reference/*.py
bash -n bench/lambda/sizes.sh bench/reference/load-national.sh bench/python-parse/run.sh

stage "fuzz smoke run (the committed corpus, then 20 s of fuzzing per target)"
bash infra/fuzz.sh smoke

stage "sam build for x86_64, without LTO: a bootstrap per function (infra/sam-build.sh)"
bash infra/sam-build.sh --quick

stage "the whole suite passed"
