"""README: the Python example runs as written, and the methods table lists every registered objective."""

import re
from pathlib import Path

from pairlab import registry
from pairlab.report.readme import END, START, methods_table

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_example_runs_and_trains(capsys):
    blocks = python_blocks()
    assert blocks, "README has no ```python block"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 12
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)
    assert ns["loss"].ndim == 0 and ns["z"].shape == (32, 2, 128)
    assert all(p.grad is not None for p in ns["encoder"].parameters())
    assert capsys.readouterr().out.startswith("loss ")


def test_methods_table_lists_every_objective():
    text = README.read_text()
    block = text[text.index(START) : text.index(END)]
    for name in registry.available("objectives"):
        assert f"`{name}`" in block, f"README methods table misses {name!r}: run python -m pairlab.report.readme"
    assert methods_table().splitlines()[0] == "| method | registry name | paper |"


def test_readme_mentions_both_commands_and_torchrun():
    text = README.read_text()
    assert "make demo" in text and "make test" in text and "torchrun" in text
