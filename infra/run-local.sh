#!/usr/bin/env bash
# Runs the hub locally on the moto emulator, in the foreground; Ctrl-C stops it.
# Ports: HUB_API_PORT (default 3000), HUB_EMULATOR_PORT (default 4566).
# The demo clients' keys are kept in .local (HUB_LOCAL_STATE_DIR moves it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh --binaries-only
exec target/debug/hub-local run --template template.yaml "$@"
