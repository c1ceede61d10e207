#!/usr/bin/env bash
# Regenerates the generated fixtures from the NEMS example messages:
#   events/derived/*.xml      examples with a documented change (see NOTICE)
#   events/nems-json/*.json   the JSON form of events/nems/*.xml
#   events/derived/*.json     the JSON form of events/derived/*.xml
#   events/nems-spec-json/    the JSON form of events/nems-spec/*.xml; the few
#                             that are not valid FHIR STU3 are listed, with
#                             the converter's reason, in NOT-CONVERTED.txt
# with the project's converter (infra/tools/fhir_xml_to_json.py).
# Needs the project venv (infra/setup.sh). Takes an optional output root
# (default: events/) so that tests can check the committed files are current.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-events}
mkdir -p "$out/nems-json" "$out/derived" "$out/nems-spec-json"

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
: > "$out/nems-spec-json/NOT-CONVERTED.txt"
for xml in events/nems-spec/*.xml; do
  name=$(basename "$xml" .xml)
  if ! reason=$(.venv/bin/python infra/tools/fhir_xml_to_json.py "$xml" "$out/nems-spec-json/$name.json" 2>&1); then
    rm -f "$out/nems-spec-json/$name.json"
    echo "$name.xml: $(printf '%s' "$reason" | tail -n 1)" >> "$out/nems-spec-json/NOT-CONVERTED.txt"
  fi
done
echo "generated fixtures under $out/"
