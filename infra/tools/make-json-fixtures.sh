#!/usr/bin/env bash
# Regenerates the generated fixtures from the NEMS example messages:
#   events/derived/*.xml      examples with a documented change (see NOTICE)
#   events/nems-json/*.json   the JSON form of events/nems/*.xml
#   events/derived/*.json     the JSON form of events/derived/*.xml
# with the project's converter (infra/tools/fhir_xml_to_json.py).
# Needs the project venv (infra/setup.sh). Takes an optional output root
# (default: events/) so that tests can check the committed files are current.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-events}
mkdir -p "$out/nems-json" "$out/derived"

# The mother's NHS number in the published birth notification fails its check
# digit; the hub rejects it. This copy carries a valid test number instead.
sed 's/1112223330/9449305552/g' events/nems/BirthNotificationWithMother.xml \
  > "$out/derived/BirthNotificationWithMother-valid-mother.xml"

for xml in events/nems/*.xml; do
  name=$(basename "$xml" .xml)
  .venv/bin/python infra/tools/fhir_xml_to_json.py "$xml" "$out/nems-json/$name.json"
done
for xml in "$out"/derived/*.xml; do
  name=$(basename "$xml" .xml)
  .venv/bin/python infra/tools/fhir_xml_to_json.py "$xml" "$out/derived/$name.json"
done
echo "generated fixtures under $out/"
