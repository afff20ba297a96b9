#!/usr/bin/env python3
"""check-layers.py — the library's layering rules, checked over its `crate::` paths.

1. Layers, bottom to top (src/lib.rs lists them). A module may name modules of its own layer or
   below, never above; two modules of one layer must not name each other (a cycle).
2. One door: only repo/ and backend/ may call `.backend()` or `.key()`; the command line neither.
3. The library never names the command line's crates (clap, indicatif, fuser).

Test modules (from a line `#[cfg(test)]` to the end of a file) and comments are left out: a test
may use anything. Prints each offending line and exits 1.
"""
import pathlib
import re
import sys

LAYERS = [
    ["error", "ids", "escape", "interrupt", "testutil"],
    ["crypto", "chunker"],
    ["blob"],
    ["format"],
    ["sys"],
    ["backend"],
    ["index"],
    ["repo"],
    ["write"],
    ["ops"],
    ["sop"],
    ["tests"],
]
LAYER = {m: i + 1 for i, ms in enumerate(LAYERS) for m in ms}
DOOR = {"repo", "backend"}
CRATE_PATH = re.compile(r"\bcrate::([a-z_0-9]+)")
DOOR_CALL = re.compile(r"\.(backend|key)\(\)")
CLI_CRATE = re.compile(r"\b(clap|indicatif|fuser)::")

src = pathlib.Path(__file__).resolve().parent.parent / "src"


def code_lines(path):
    """(line number, code) pairs: comments stripped, test modules left out."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"\s*#\[cfg\(test\)\]", line):
            return
        yield n, line.split("//", 1)[0]


def module_of(path):
    rel = path.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


errors = []
uses = {}  # (module, used module) -> first place
for path in sorted(src.rglob("*.rs")):
    rel = path.relative_to(src)
    mod = module_of(path)
    in_cli = rel.parts[0] in ("cli", "main.rs")
    if in_cli:
        for n, code in code_lines(path):
            if DOOR_CALL.search(code):
                errors.append(f"src/{rel}:{n}: the command line calls .backend() or .key(); "
                              "add a repository operation")
        continue
    if mod == "lib":
        continue
    if mod not in LAYER:
        errors.append(f"src/{rel}: module '{mod}' has no layer; add it to "
                      "scripts/check-layers.py and src/lib.rs")
        continue
    for n, code in code_lines(path):
        for used in set(CRATE_PATH.findall(code)):
            if used == mod:
                continue
            if used not in LAYER:
                errors.append(f"src/{rel}:{n}: uses crate::{used}, which has no layer")
            elif LAYER[used] > LAYER[mod]:
                errors.append(f"src/{rel}:{n}: {mod} (layer {LAYER[mod]}) uses crate::{used} "
                              f"(layer {LAYER[used]}): an arrow pointing up")
            else:
                uses.setdefault((mod, used), f"src/{rel}:{n}")
        if CLI_CRATE.search(code):
            errors.append(f"src/{rel}:{n}: the library names a command-line crate")
        if mod not in DOOR and DOOR_CALL.search(code):
            errors.append(f"src/{rel}:{n}: only repo/ and backend/ may call .backend() or .key(); "
                          "add a repository operation")

for (a, b), where in sorted(uses.items()):
    if a < b and (b, a) in uses:
        errors.append(f"{where} and {uses[(b, a)]}: {a} and {b} use each other (a cycle)")

for e in errors:
    print(f"check-layers: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
files = sum(1 for _ in src.rglob("*.rs"))
print(f"check-layers: ok ({files} files in {len(LAYER)} modules over {len(LAYERS)} layers: "
      "no arrow up, no cycle, one door)")
