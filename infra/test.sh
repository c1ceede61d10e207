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

stage "cargo fmt --check"
cargo fmt --all -- --check

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
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
bash infra/tools/make-json-fixtures.sh "$scratch" > /dev/null
for folder in nems-json derived nems-spec-json; do
  diff -r "$scratch/$folder" "events/$folder" --exclude NOTICE.md \
    || { echo "events/$folder is stale: run infra/tools/make-json-fixtures.sh"; exit 1; }
done
python3 infra/tools/make-sample-events.py "$scratch/apigw"
diff -r "$scratch/apigw" events/apigw \
  || { echo "events/apigw is stale: run infra/tools/make-sample-events.py"; exit 1; }

stage "cargo test"
cargo test --workspace

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
