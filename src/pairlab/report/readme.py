"""The README's table of methods, generated from the registry (``python -m pairlab.report.readme``).

Rows come from :func:`pairlab.registry.as_json` (kind ``objectives``: name, registry name, paper meta), so a
new objective appears by registering it and re-running this module; ``tests/test_readme.py`` checks that the
README lists every registered objective.
"""

from __future__ import annotations

import re
from pathlib import Path

START, END = "<!-- methods:start -->", "<!-- methods:end -->"


def methods_table(kind: str = "objectives") -> str:
    """Markdown table ``| method | registry name | paper |`` for every component of ``kind``."""
    from pairlab import registry

    rows = ["| method | registry name | paper |", "| --- | --- | --- |"]
    for e in registry.as_json()[kind]:
        method = e["target"].rsplit(".", 1)[-1]
        summary = (e.get("summary") or "").replace("|", "/")
        paper = str(e.get("paper", "")).replace("|", "/")
        rows.append(f"| {method}: {summary} | `{e['name']}` | {paper} |")
    return "\n".join(rows)


def update_readme(path: str | Path = "README.md") -> bool:
    """Rewrite the block between the markers; returns whether the file changed."""
    p = Path(path)
    text = p.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{p} has no {START} ... {END} block")
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{methods_table()}\n{END}", text,
                 flags=re.S)
    if new != text:
        p.write_text(new)
    return new != text


if __name__ == "__main__":  # pragma: no cover
    print("updated" if update_readme() else "unchanged")
