"""Parse every NEMS example message into the STU3 Bundle model of PyPI
`fhir.resources` (what a Python team would use), timing each file.

The files are the ones `cargo bench -p hub --bench read_validate` reads
(shared/benches/read_validate.rs): events/nems/*.xml, events/nems-json/*.json
and events/derived/*.{xml,json}. The published BirthNotificationWithMother
(events/nems) is left out as the Rust bench leaves it out (the hub refuses it
by design); its valid form under derived/ is timed instead.

What is timed is `Bundle.model_validate_xml(body)` / `Bundle.model_validate_json(body)`
alone: the tree and the STU3 model validation. The Rust figure it is compared
with also covers the hub's own routing and event rules and the store request
(with a SHA-256 of the body), so the comparison favours Python.

Per file: a warm-up, then SAMPLES samples, each timing a loop sized to take
about TARGET_SAMPLE_S; the figure is the median of the per-iteration times.

Run (from the repository root):
    bench/python-parse/run.sh            # makes the venv, installs, runs
    bench/python-parse/.venv/bin/python bench/python-parse/parse.py [--markdown]
"""

import argparse
import pathlib
import statistics
import sys
import time

from fhir.resources.STU3.bundle import Bundle

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
SAMPLES = 15
TARGET_SAMPLE_S = 0.1
WARM_UP_S = 0.3


def fixtures():
    out = []
    for folder, encoding, ext in [
        ("nems", "XML", "xml"),
        ("nems-json", "JSON", "json"),
        ("derived", "XML", "xml"),
        ("derived", "JSON", "json"),
    ]:
        for path in sorted((EVENTS / folder).glob(f"*.{ext}")):
            if folder != "derived" and path.stem == "BirthNotificationWithMother":
                continue
            out.append((path.stem, encoding, path.read_bytes()))
    return out


def parser(encoding):
    return Bundle.model_validate_xml if encoding == "XML" else Bundle.model_validate_json


def once(parse, body):
    try:
        parse(body)
        return "parsed"
    except Exception as error:  # pydantic ValidationError, lxml errors
        return f"refused: {type(error).__name__}: {str(error).splitlines()[0:3]}"


def time_file(parse, body):
    # Warm-up, and the loop size for one sample.
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < WARM_UP_S:
        once(parse, body)
        n += 1
    per = (time.perf_counter() - start) / n
    loops = max(1, int(TARGET_SAMPLE_S / per))
    samples = []
    for _ in range(SAMPLES):
        t0 = time.perf_counter()
        for _ in range(loops):
            once(parse, body)
        samples.append((time.perf_counter() - t0) / loops)
    return statistics.median(samples) * 1e6, min(samples) * 1e6, max(samples) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--only", help="substring of the file names to time")
    args = ap.parse_args()
    import fhir.resources
    import lxml
    import pydantic

    print(
        f"# python {sys.version.split()[0]}, fhir.resources {fhir.resources.__version__}, "
        f"pydantic {pydantic.VERSION}, lxml {lxml.__version__}",
        file=sys.stderr,
    )
    rows = []
    for name, encoding, body in fixtures():
        if args.only and args.only not in name:
            continue
        parse = parser(encoding)
        outcome = once(parse, body)
        median, low, high = time_file(parse, body)
        rows.append((name, encoding, len(body), median, low, high, outcome))
        print(f"{name:45} {encoding:4} {len(body):6} {median:10.1f} us  ({low:.1f}..{high:.1f})  {outcome}",
              file=sys.stderr, flush=True)
    if args.markdown:
        print("| message | encoding | size (bytes) | median µs | min..max µs | outcome |")
        print("|---|---|---|---|---|---|")
        for name, encoding, size, median, low, high, outcome in rows:
            print(f"| {name} | {encoding} | {size} | {median:.0f} | {low:.0f}..{high:.0f} | {outcome} |")
    else:
        for name, encoding, size, median, low, high, outcome in rows:
            print(f"{name}\t{encoding}\t{size}\t{median:.1f}\t{outcome}")


if __name__ == "__main__":
    main()
