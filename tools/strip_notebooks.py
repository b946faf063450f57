"""Strip outputs from notebooks before committing: outputs, execution counts, widget state, papermill metadata.

Usage::

    .venv/bin/python tools/strip_notebooks.py              # strip notebooks/*.ipynb in place
    .venv/bin/python tools/strip_notebooks.py --check      # exit 1 and name the notebooks that need stripping
    .venv/bin/python tools/strip_notebooks.py a.ipynb ...  # particular files

Executed copies belong in reports/ (generated, untracked); the committed notebooks carry only their source, so
diffs show code changes and no stale numbers are ever mistaken for results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
KEEP_METADATA = ("kernelspec", "language_info")  # notebook-level keys worth committing
KEEP_CELL_METADATA = ("tags",)  # the "parameters" tag is what papermill looks for


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return ``nb`` without outputs, execution counts, widget state or run metadata (modified in place)."""
    nb.metadata = nbformat.NotebookNode({k: v for k, v in nb.metadata.items() if k in KEEP_METADATA})
    if "language_info" in nb.metadata:  # the kernel fills in versions on every run; keep only the language
        nb.metadata.language_info = nbformat.NotebookNode({"name": nb.metadata.language_info.get("name", "python")})
    for cell in nb.cells:
        kept = {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA and v}
        cell.metadata = nbformat.NotebookNode(kept)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook needs stripping")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        original = path.read_text(encoding="utf-8")
        stripped = nbformat.writes(strip(nbformat.reads(original, as_version=4))) + "\n"
        if stripped != original:
            dirty.append(path)
            if not args.check:
                path.write_text(stripped, encoding="utf-8")
    verb = "need stripping" if args.check else "stripped"
    for path in dirty:
        print(f"{verb}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
