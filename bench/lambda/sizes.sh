#!/usr/bin/env bash
# Issue 9, target 2 (size): each function's deployment package as Lambda's
# provided.al2023 runtime wants it, a zip holding the binary as `bootstrap`,
# against the ~11 MB unzipped anchor and the 4 MB zipped target.
#
#   cargo build --release        # first: target/release/<function>
#   bench/lambda/sizes.sh [BIN_DIR] [OUT_DIR] [NAME...]
#
# NAMEs, when given, are the binaries of BIN_DIR to zip instead of every
# function (issue 19's hello-world twins, see docs/benchmarks.md).
#
# The zips (deflate, level 9, as `zip -9` packs them; the default level 6
# gives about 0.6 % more: 3 912 335 against 3 889 471 bytes for audit-read)
# go to OUT_DIR (default target/lambda-zips). Sizes are in bytes and in MB
# (10^6 bytes, the unit taken for the anchor and the target).
# The binaries are built for this machine's target (x86_64 here); the
# deployed functions are arm64 (template.yaml): see docs/benchmarks.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="${1:-$root/target/release}"
out_dir="${2:-$root/target/lambda-zips}"
mkdir -p "$out_dir"

printf '| function | binary (bytes) | binary (MB) | zip (bytes) | zip (MB) | binary / 11 MB unzipped anchor | zip under 4 MB |\n'
printf '|---|---|---|---|---|---|---|\n'
max=0
missing=()
names=()
if (( $# > 2 )); then
  names=("${@:3}")
else
  for dir in "$root"/functions/*/; do names+=("$(basename "$dir")"); done
fi
for name in "${names[@]}"; do
  bin="$bin_dir/$name"
  if [[ ! -f "$bin" ]]; then
    missing+=("$name")
    continue
  fi
  zip_path="$out_dir/$name.zip"
  python3 - "$bin" "$zip_path" <<'PY'
import os, sys, zipfile
binary, out = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(2026, 1, 1, 0, 0, 0))
info.compress_type = zipfile.ZIP_DEFLATED
info.external_attr = (0o100755 & 0xFFFF) << 16  # a regular, executable file
info.create_system = 3  # Unix, so the mode is honoured
with open(binary, "rb") as f, zipfile.ZipFile(out, "w") as z:
    z.writestr(info, f.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
PY
  bin_size=$(stat -c %s "$bin")
  zip_size=$(stat -c %s "$zip_path")
  (( zip_size > max )) && max=$zip_size
  python3 - "$name" "$bin_size" "$zip_size" <<'PY'
import sys
name, b, z = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(f"| {name} | {b} | {b/1e6:.2f} | {z} | {z/1e6:.2f} | {b/11e6:.2f} | {'yes' if z < 4e6 else 'no'} |")
PY
done
echo
echo "largest zip: $max bytes ($(python3 -c "print(f'{$max/1e6:.2f} MB, {$max/2**20:.2f} MiB')")); target: $(uname -m) ($(file -b "$bin_dir/${names[0]}" 2>/dev/null | cut -d, -f1-2 || true))"
if (( ${#missing[@]} )); then
  echo "no binary for: ${missing[*]}" >&2
fi
