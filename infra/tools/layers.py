#!/usr/bin/env python3
"""Fails when a module of the hub crate (shared/src) imports from a layer
above its own, or when the domain does what only outer layers may.

The layers, inner to outer (docs/architecture.md, "Layers"):
  domain   every top-level module not named below: types and rules
  ports    ports.rs: the traits the use cases need
  app      app/: the use cases, which take ports
  adapters memory/ (in-memory, behind the `memory` feature) and aws/
  lambda   lambda/: API Gateway and stream events in, responses out

A module may import from its own layer and the layers inside it; the two
adapters do not import each other. Test code (`#[cfg(test)]` items) may
import anything. The domain also holds no `async fn`, reads no environment
variable and names no runtime. The compiler cannot see any of this inside
one crate; this script is the check, run by infra/test.sh.

Usage: python3 infra/tools/layers.py [shared/src]
"""

import pathlib
import re
import sys

ORDER = {"domain": 0, "ports": 1, "app": 2, "memory": 3, "aws": 3, "lambda": 4}
FOLDER_LAYERS = {"app", "memory", "aws", "lambda"}


def layer_of(module: str) -> str:
    if module == "ports" or module in FOLDER_LAYERS:
        return module
    return "domain"


def without_tests_and_comments(text: str) -> str:
    """The file's text without comments and without the items marked
    #[cfg(test)] (a brace-balanced block or a single line)."""
    text = re.sub(r"//[^\n]*", "", text)
    out, i = [], 0
    marker = re.compile(r"#\[cfg\(test\)\]")
    while True:
        found = marker.search(text, i)
        if not found:
            out.append(text[i:])
            break
        out.append(text[i : found.start()])
        j = found.end()
        # The item runs to the first ';' before any '{', or to its block's end.
        semicolon, brace = text.find(";", j), text.find("{", j)
        if brace == -1 or (semicolon != -1 and semicolon < brace):
            i = semicolon + 1 if semicolon != -1 else len(text)
            continue
        depth, k = 0, brace
        while k < len(text):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        i = k + 1
    return "".join(out)


def imported_modules(code: str) -> set[str]:
    names = set(re.findall(r"\bcrate::(\w+)", code))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", code):
        names.update(re.findall(r"(?:^|,)\s*(\w+)", group))
    return names


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "shared/src")
    problems = []
    files = sorted(root.rglob("*.rs"))
    if len(files) < 20:
        problems.append(f"{root}: only {len(files)} source files found; is this the hub crate?")
    for path in files:
        relative = path.relative_to(root)
        if relative.parts == ("lib.rs",):
            continue
        module = relative.parts[0].removesuffix(".rs")
        layer = layer_of(module)
        code = without_tests_and_comments(path.read_text())
        for imported in sorted(imported_modules(code)):
            if imported == "self" or not (root / f"{imported}.rs").exists() and not (root / imported).is_dir():
                continue
            target = layer_of(imported)
            upward = ORDER[target] > ORDER[layer]
            sideways = ORDER[target] == ORDER[layer] and target != layer
            if upward or sideways:
                problems.append(f"{relative}: {layer} imports crate::{imported} ({target})")
        if layer == "domain":
            for pattern, what in [
                (r"\basync\s+fn\b", "an async fn"),
                (r"\bstd::env::|\benv::var", "an environment variable"),
                (r"\btokio::", "the runtime"),
            ]:
                if re.search(pattern, code):
                    problems.append(f"{relative}: the domain holds {what}")
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} layering problem(s); docs/architecture.md says which layer may import which")
        return 1
    print(f"layers: {len(files)} files, every import points inwards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
