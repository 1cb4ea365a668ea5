"""Generate the documentation's method pages from the registry (run by `make docs` before mkdocs).

One page per registered component: its registry name and kind, paper, the module docstring (formula,
defaults, deviations from the official code), the class/function docstring, the call signature and a
runnable snippet. Committed leaderboards and reports under ``benchmarks/results/*.md`` become pages too.
Generated files go to ``docs/methods/`` and ``docs/results/`` (git-ignored).
"""

from __future__ import annotations

import inspect
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

SNIPPETS = {
    "views": "z = torch.randn(32, 2, 128)                 # [B, K, D]: 2 views of 32 samples\n"
    "labels = torch.randint(0, 10, (32,))\n"
    "loss = loss_fn(z, labels=labels)",
    "pair": "a, b = torch.randn(32, 128), torch.randn(32, 128)   # two towers, row i paired with row i\n"
    "loss = loss_fn(a, b)",
    "labels": "embeddings = torch.randn(32, 128)          # [B, D]\n"
    "labels = torch.randint(0, 4, (32,))\n"
    "loss = loss_fn(embeddings, labels)",
}


def _md_docstring(doc: str | None) -> str:
    if not doc:
        return "_(no docstring)_"
    text = inspect.cleandoc(doc)
    text = re.sub(r":(?:mod|class|func|meth|attr|data):`~?([^`]+)`", r"``\1``", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    # Google-style section headers read better as bold lines
    return re.sub(r"^(Args|Returns|Examples|Example|Raises|Attributes|Note|Notes):\s*$", r"**\1**", text, flags=re.M)


def _page(kind: str, entry) -> str:
    obj = entry.obj
    mod = sys.modules[obj.__module__]
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = "(...)"
    lines = [
        f"# `{entry.name}` ({kind[:-1]})",
        "",
        f"**Python:** `{obj.__module__}.{obj.__qualname__}`  ",
        f"**CLI / config:** `--{kind[:-1]} {entry.name}`" if kind != "metrics" else f"**Metric:** `{entry.name}`",
        "",
    ]
    if entry.meta.get("paper"):
        lines += [f"**Paper:** {entry.meta['paper']}", ""]
    if entry.meta:
        meta = ", ".join(f"`{k}={v}`" for k, v in entry.meta.items() if k != "paper")
        if meta:
            lines += [f"**Registry metadata:** {meta}", ""]
    lines += [
        "## Method",
        "",
        _md_docstring(mod.__doc__),
        "",
        f"## `{obj.__qualname__}`",
        "",
        "```python",
        f"{obj.__qualname__}{sig}",
        "```",
        "",
        _md_docstring(obj.__doc__),
        "",
    ]
    code = snippet(kind, entry)
    if code:
        lines += ["## Runnable snippet", "", "```python", code, "```", ""]
    return "\n".join(lines)


def snippet(kind: str, entry) -> str | None:
    """The page's runnable snippet: the docstring's doctest lines, else a generic call by input kind."""
    doc = inspect.getdoc(entry.obj) or ""
    lines = [ln.strip() for ln in doc.splitlines()]
    code = [ln[4:] for ln in lines if ln.startswith((">>> ", "... "))]
    if code:
        from pairlab import registry

        body = "\n".join(code)
        head = ["import torch"]
        seen = set()
        for k in registry.KINDS:
            for name in registry.available(k):
                obj = registry.get(k, name).obj
                qual = obj.__qualname__.split(".")[0]
                if qual not in seen and re.search(rf"\b{re.escape(qual)}\b", body):
                    seen.add(qual)
                    head.append(f"from {obj.__module__} import {qual}")
        return "\n".join(head + code)
    inp = entry.meta.get("input")
    if kind == "objectives" and inp in SNIPPETS:
        return "\n".join(
            [
                "import torch",
                "from pairlab import registry",
                "",
                f'loss_fn = registry.build("objectives", "{entry.name}")',
                SNIPPETS[inp],
                "print(float(loss))",
            ]
        )
    return None


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from pairlab import registry

    methods = DOCS / "methods"
    shutil.rmtree(methods, ignore_errors=True)
    methods.mkdir(parents=True)
    index = ["# Methods", "", "Every registered component, generated from the registry and the docstrings.", ""]
    data = registry.as_json()
    for kind in registry.KINDS:
        if not data[kind]:
            continue
        index += [f"## {kind.capitalize()}", "", "| name | summary | paper |", "|---|---|---|"]
        for e in data[kind]:
            entry = registry.get(kind, e["name"])
            fname = f"{kind}-{e['name']}.md"
            (methods / fname).write_text(_page(kind, entry))
            summary = e["summary"].replace("|", "\\|")
            index.append(f"| [`{e['name']}`]({fname}) | {summary} | {e.get('paper', '')} |")
        index.append("")
    (methods / "index.md").write_text("\n".join(index))

    results = DOCS / "results"
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir()
    res_index = ["# Results", "", "Leaderboards, benchmarks and reports committed under `benchmarks/results/`.", ""]
    src = ROOT / "benchmarks" / "results"
    for f in sorted(src.glob("*")):
        if f.suffix in (".md", ".png", ".svg", ".csv", ".json"):
            shutil.copy(f, results / f.name)
        if f.suffix == ".md":
            title = next((ln.lstrip("# ").strip() for ln in f.read_text().splitlines() if ln.startswith("#")), f.stem)
            res_index.append(f"- [{title}]({f.name})")
    (results / "index.md").write_text("\n".join(res_index) + "\n")
    print(f"generated {sum(len(v) for v in data.values())} method pages and {len(res_index) - 4} result pages")


if __name__ == "__main__":
    main()
