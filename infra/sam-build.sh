#!/usr/bin/env bash
# Builds what `sam deploy` would upload, as far as a machine without an AWS
# account can: `sam build` of template.yaml (BuildMethod rust-cargolambda, a
# release build per function) for x86_64, then checks that every function of
# the template has its x86-64 `bootstrap` in the build directory.
#
# All functions are first compiled in one cargo-lambda invocation, so that
# cargo spreads the release builds over every core; the per-function builds
# SAM then runs find them up to date and only copy them. The binaries are
# the same either way: same profile, target and features.
#
# --quick (what CI runs) turns off the release profile's whole-program
# optimisation (LTO, one codegen unit) through cargo's environment: 31 fat
# LTO links take about an hour on 2 cores, past CI's budget
# (docs/benchmarks.md). Everything else is what `sam deploy` would upload:
# the same code, target, packaging and SAM build path; only the
# optimisation differs.
set -euo pipefail
if [ "${1:-}" = --quick ]; then
  export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
elif [ -n "${1:-}" ]; then
  echo "usage: infra/sam-build.sh [--quick]   (ARCHITECTURE=x86_64|arm64, SAM_BUILD_DIR)"
  exit 2
fi
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
# cargo-lambda and the zig it links with come from the project venv.
export PATH="$PWD/.venv/bin:$PATH"
architecture=${ARCHITECTURE:-x86_64}
build_dir=${SAM_BUILD_DIR:-.aws-sam/build}

case "$architecture" in
  x86_64) target_flag=--x86-64 machine=3e00 ;;
  arm64) target_flag=--arm64 machine=b700 ;;
  *) echo "ARCHITECTURE must be x86_64 or arm64, not $architecture"; exit 1 ;;
esac

# The package of every function crate (functions/<dir>/Cargo.toml).
packages=()
for manifest in functions/*/Cargo.toml; do
  packages+=(-p "$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n1)")
done
echo "==> cargo lambda build --release $target_flag ($(( ${#packages[@]} / 2 )) function crates at once)"
cargo lambda build --release "$target_flag" "${packages[@]}"

echo "==> sam build (Architecture=$architecture)"
sam build --template template.yaml --build-dir "$build_dir" \
  --parameter-overrides "Architecture=$architecture"

# Every AWS::Serverless::Function of the template: the logical id is the
# line before its Type.
functions=$(awk '/^    Type: AWS::Serverless::Function$/ { sub(":", "", previous); print previous } { previous = $1 }' template.yaml)
count=0
for function in $functions; do
  bootstrap="$build_dir/$function/bootstrap"
  [ -x "$bootstrap" ] || { echo "$function: no executable $bootstrap"; exit 1; }
  # ELF magic, then e_machine (offset 18, little-endian): 0x3e x86-64, 0xb7 aarch64.
  [ "$(od -An -tx1 -N4 "$bootstrap" | tr -d ' ')" = 7f454c46 ] \
    || { echo "$function: $bootstrap is not an ELF executable"; exit 1; }
  [ "$(od -An -tx1 -j18 -N2 "$bootstrap" | tr -d ' ')" = "$machine" ] \
    || { echo "$function: $bootstrap is not built for $architecture"; exit 1; }
  count=$((count + 1))
done
[ "$count" -gt 0 ] || { echo "no AWS::Serverless::Function found in template.yaml"; exit 1; }
echo "sam build: $count functions, each with its $architecture bootstrap in $build_dir"
