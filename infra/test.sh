#!/usr/bin/env bash
# The whole test suite: formatting, lints, template checks, fixtures, unit,
# adapter and end-to-end tests. The end-to-end tests start the emulator and
# the local hub themselves, on free ports, and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0

bash infra/setup.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> template lint (cfn-lint, sam validate --lint)"
.venv/bin/cfn-lint template.yaml
.venv/bin/sam validate --lint --region eu-west-2 --template template.yaml

echo "==> openapi.yaml is a valid OpenAPI document"
.venv/bin/openapi-spec-validator openapi.yaml

echo "==> fixtures and sample events are what the generators produce"
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

echo "==> cargo test"
cargo test --workspace

echo "==> sam build for x86_64, without LTO: a bootstrap per function (infra/sam-build.sh)"
bash infra/sam-build.sh --quick
