#!/usr/bin/env bash
# Installs what the hub needs on a fresh machine: the project-local Python
# venv (moto, cfn-lint, SAM CLI) and a build of every binary, then (unless
# --binaries-only) every test and clippy's check of every dependency, so the
# first `infra/test.sh` compiles only what changed. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

binaries_only=false
case "${1:-}" in
  --binaries-only) binaries_only=true ;;
  "") ;;
  *) echo "usage: infra/setup.sh [--binaries-only]" >&2; exit 2 ;;
esac

python=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
wanted=$(sha256sum infra/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing Python tools into .venv (infra/requirements.txt)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements.txt
  echo "$wanted" > "$stamp"
fi

# The emulator the local stack and the tests start: moto's server with the
# project's one change (infra/emulator.py says which and why).
cat > .venv/bin/hub-emulator <<'SCRIPT'
#!/bin/sh
here=$(dirname "$0")
exec "$here/python" "$here/../../infra/emulator.py" "$@"
SCRIPT
chmod +x .venv/bin/hub-emulator

echo "==> building the hub (cargo build --workspace --bins)"
cargo build --workspace --bins --quiet
$binaries_only && exit 0

echo "==> building every test (cargo test --workspace --no-run)"
cargo test --workspace --no-run --quiet
# Clippy checks the dependencies as `cargo check` does and reuses its
# output: on a fresh clone that is most of clippy's time.
echo "==> checking every target (cargo check --workspace --all-targets)"
cargo check --workspace --all-targets --quiet
