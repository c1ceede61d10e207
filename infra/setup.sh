#!/usr/bin/env bash
# Installs what the hub needs on a fresh machine: the project-local Python
# venv (moto, cfn-lint, SAM CLI) and a build of every binary. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

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
