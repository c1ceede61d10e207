#!/usr/bin/env bash
# Regenerates events/nems-json/*.json from events/nems/*.xml with the
# project's converter. Needs the project venv (infra/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
for xml in events/nems/*.xml; do
  name=$(basename "$xml" .xml)
  .venv/bin/python infra/tools/fhir_xml_to_json.py "$xml" "events/nems-json/$name.json"
done
echo "converted $(ls events/nems/*.xml | wc -l) messages into events/nems-json/"
