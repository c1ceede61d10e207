#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo fuzz, libFuzzer), on the stable toolchain:
# cargo fuzz needs nightly flags, which RUSTC_BOOTSTRAP=1 allows.
#
#   infra/fuzz.sh smoke              every target over its committed corpus,
#                                    then SMOKE_SECONDS (20) of fuzzing each
#   infra/fuzz.sh run TARGET SECONDS one target, one job, growing its corpus
#   infra/fuzz.sh cmin TARGET        minimise a target's committed corpus
#
# New inputs found by a smoke run go to a scratch directory, so that CI
# leaves the committed corpus as it is; a crash stops the run, its input in
# fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

targets() { sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hub-fuzz$'; }

# Debug assertions on: an arithmetic overflow is a finding too.
build() { cargo fuzz build --debug-assertions "$@"; }
# run TARGET SECONDS CORPUS...: new inputs go to the first corpus directory.
run() {
  local target=$1 seconds=$2
  shift 2
  cargo fuzz run --debug-assertions "$target" "$@" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
}

case "${1:-}" in
  smoke)
    build
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for target in $(targets); do
      echo "--> $target"
      mkdir -p "$scratch/$target"
      if ! run "$target" "${SMOKE_SECONDS:-20}" "$scratch/$target" "fuzz/corpus/$target" \
        > "$scratch/$target.log" 2>&1; then
        tail -n 60 "$scratch/$target.log"
        exit 1
      fi
      grep -E '^(stat::number_of_executed_units|#[0-9]+ +DONE)' "$scratch/$target.log"
    done
    ;;
  run)
    build "$2"
    run "$2" "$3" "fuzz/corpus/$2"
    ;;
  cmin)
    cargo fuzz cmin --debug-assertions "$2" "fuzz/corpus/$2" -- -max_len=65536
    ;;
  *)
    echo "usage: infra/fuzz.sh smoke | run TARGET SECONDS | cmin TARGET" >&2
    exit 2
    ;;
esac
