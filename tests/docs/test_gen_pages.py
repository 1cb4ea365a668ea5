"""Every generated method page's snippet runs; every registered component gets a page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pairlab import registry

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gen_pages", ROOT / "docs" / "gen_pages.py")
gen_pages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_pages)

ENTRIES = [(kind, e["name"]) for kind, entries in registry.as_json().items() for e in entries]


@pytest.mark.parametrize("kind,name", ENTRIES, ids=[f"{k}-{n}" for k, n in ENTRIES])
def test_page_renders_and_snippet_runs(kind, name):
    entry = registry.get(kind, name)
    page = gen_pages._page(kind, entry)
    assert page.startswith(f"# `{name}`")
    code = gen_pages.snippet(kind, entry)
    if kind == "objectives":
        assert code is not None, f"objective {name} has no runnable snippet: add an Examples section (>>> lines)"
    if code:
        exec(compile(code, f"<snippet {kind}-{name}>", "exec"), {})
