"""The Python/Rust ratio per message: reads the Rust figures from the first
table of docs/benchmarks.md ("Read + validate + store request, per
message") and one or more `parse.py --markdown` outputs, and prints a
markdown table. With several Python runs the lower median of each file is
used: load on the machine only ever slows a run.

    python3 bench/python-parse/compare.py /tmp/run1.md [/tmp/run2.md ...]
"""

import pathlib
import re
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| ([^|]+?) \| (XML|JSON) \| (\d+) \| ([0-9.]+) (µs|ms) \|$")


def rust_figures():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    section = text.split("## Read + validate + store request, per message", 1)[1]
    section = section.split("\n## ", 1)[0]
    figures = {}
    for line in section.splitlines():
        match = ROW.match(line.strip())
        if match:
            name, encoding, _size, value, unit = match.groups()
            figures[(name, encoding)] = float(value) * (1000 if unit == "ms" else 1)
    return figures


def python_runs(paths):
    runs = []
    for path in paths:
        run = {}
        for line in pathlib.Path(path).read_text().splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) >= 6 and cells[1] in ("XML", "JSON") and cells[3].isdigit():
                run[(cells[0], cells[1])] = (int(cells[2]), float(cells[3]), cells[5])
        runs.append(run)
    return runs


def main():
    rust = rust_figures()
    runs = python_runs(sys.argv[1:])
    heads = " | ".join(f"Python run {i + 1} (µs)" for i in range(len(runs)))
    print(f"| message | encoding | size (bytes) | Rust (µs) | {heads} | ratio Python / Rust |")
    print("|---|---|---|---|" + "---|" * len(runs) + "---|")
    ratios = {"XML": [], "JSON": []}
    for key in runs[0]:
        size, _, outcome = runs[0][key]
        medians = [run[key][1] for run in runs if key in run]
        best = min(medians)
        cells = " | ".join(f"{m:.0f}" for m in medians)
        if key in rust:
            ratio = best / rust[key]
            if outcome == "parsed":
                ratios[key[1]].append(ratio)
            ratio_text = f"{ratio:.0f}x"
        else:
            ratio_text = "no Rust figure"
        if outcome != "parsed":
            ratio_text += " (Python refused it: time to the error, not in the summary)"
        print(f"| {key[0]} | {key[1]} | {size} | {rust.get(key, float('nan')):.1f} | {cells} | {ratio_text} |")
    print()
    for encoding, values in ratios.items():
        if values:
            print(f"{encoding}: ratio median {statistics.median(values):.0f}x, "
                  f"range {min(values):.0f}x to {max(values):.0f}x over the {len(values)} files both parse")


if __name__ == "__main__":
    main()
