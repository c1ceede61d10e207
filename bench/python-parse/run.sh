#!/usr/bin/env bash
# Makes bench/python-parse/.venv, installs fhir.resources (STU3 models, XML
# support through lxml) and times parsing every NEMS example into an STU3
# Bundle. Arguments go to parse.py (e.g. --markdown).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
exec nice "$here/.venv/bin/python" "$here/parse.py" "$@"
