from __future__ import annotations

import json
import subprocess
import sys

from pairlab import registry
from pairlab.cli import main


def test_list_json_has_every_kind(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == registry.as_json()


def test_bad_kind_exits_2_without_traceback(capsys):
    assert main(["list", "--kind", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--kind must be one of" in err and "Traceback" not in err


def test_unknown_option_exits_2():
    assert main(["list", "--bogus"]) == 2


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "pairlab", "list", "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    assert "ntxent" in {e["name"] for e in json.loads(out.stdout)["objectives"]}
