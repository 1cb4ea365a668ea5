"""Merge ``pairlab bench loss --out`` JSON files into one record list and a markdown table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pairlab.bench.cli import markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--md", type=Path, required=True)
    args = ap.parse_args()
    records = [r for p in args.inputs for r in json.loads(p.read_text())]
    records.sort(key=lambda r: (r["form"] != "simclr", r["n"]))
    args.out.write_text(json.dumps(records, indent=1))
    args.md.write_text(markdown(records))


if __name__ == "__main__":
    main()
