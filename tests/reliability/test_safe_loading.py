"""Safe loading: checkpoints with ``weights_only=True``, configs with a safe YAML loader, no pickle of user data,
and config paths that cannot write outside the run directory.

The source scan is a property of the whole package: a new ``torch.load`` without ``weights_only=True``, a
``pickle.load``, an unsafe YAML loader or ``allow_pickle=True`` anywhere under ``src/pairlab`` fails it, unless it
is listed in ``ALLOWED`` with the reason it never sees user data.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml

from pairlab.cli import main
from pairlab.train.checkpoint import load_checkpoint, save_checkpoint
from pairlab.train.config import load_config, make_config

SRC = Path(__file__).resolve().parents[2] / "src" / "pairlab"
ALLOWED = {
    # distributed.launch reads back the results its own child processes wrote to a private temp dir it created
    # (return values of test functions, arbitrary Python objects); never a user file
    ("distributed.py", 'torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False)'),
}
UNSAFE = [
    # a torch.load call (arguments with one level of nested parentheses) that does not pass weights_only=True
    (re.compile(r"torch\.load\((?!(?:[^()]|\([^()]*\))*weights_only=True)(?:[^()]|\([^()]*\))*\)"),
     "torch.load without weights_only=True"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(cPickle|dill|marshal)\.loads?\("), "pickle-like load"),
    (re.compile(r"\byaml\.(load|unsafe_load|full_load)\("), "unsafe YAML loader"),
    (re.compile(r"Loader\s*=\s*yaml\.(Loader|UnsafeLoader|FullLoader)"), "unsafe YAML loader"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy allow_pickle"),
    (re.compile(r"\bjoblib\.load\("), "joblib.load (pickle)"),
]


def test_no_unsafe_deserialisation_in_the_package():
    found = []
    n_files = 0
    for path in sorted(SRC.rglob("*.py")):
        n_files += 1
        text = path.read_text()
        for pattern, what in UNSAFE:
            for m in pattern.finditer(text):
                if (path.name, m.group(0)) in ALLOWED:
                    continue
                line = text[: m.start()].count("\n") + 1
                found.append(f"{path.relative_to(SRC)}:{line}: {what}: {m.group(0)}")
    assert n_files > 50
    assert not found, "unsafe deserialisation:\n" + "\n".join(found)


def test_scan_would_catch_an_unsafe_load():
    bad = "x = torch.load(p)\ny = torch.load(p, weights_only=False)\nz = yaml.load(s, Loader=yaml.Loader)\n"
    hits = [what for pattern, what in UNSAFE for _ in pattern.finditer(bad)]
    assert hits.count("torch.load without weights_only=True") == 2 and "unsafe YAML loader" in hits
    assert not [1 for pattern, _ in UNSAFE for _ in pattern.finditer("torch.load(p, weights_only=True)")]


class Evil:
    """Unpickling this would run a command (creates the sentinel file)."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_checkpoint_with_code_is_refused_and_not_run(tmp_path):
    sentinel = tmp_path / "pwned"
    p = tmp_path / "checkpoint.pt"
    torch.save({"model": Evil(str(sentinel))}, p, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        load_checkpoint(p)
    assert not sentinel.exists()


def test_eval_of_a_run_with_a_malicious_checkpoint_is_exit_2(tmp_path, capsys):
    sentinel = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "run", "dataset": "digits"}))
    torch.save({"model": Evil(str(sentinel))}, run / "checkpoint.pt", pickle_module=pickle)
    code = main(["eval", str(run), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "weights_only" in err and "Traceback" not in err
    assert not sentinel.exists()


def test_wrapped_checkpoint_payload_is_loaded_weights_only(tmp_path, monkeypatch):
    """The checksummed payload is itself loaded with weights_only=True (no second, unsafe load)."""
    calls = []
    real = torch.load

    def spy(*a, **k):
        calls.append(k.get("weights_only"))
        return real(*a, **k)

    p = save_checkpoint({"step": 1, "w": torch.ones(2)}, tmp_path / "c.pt")
    monkeypatch.setattr(torch, "load", spy)
    assert load_checkpoint(p)["step"] == 1
    assert calls and all(c is True for c in calls)


def test_config_python_tags_are_refused_and_not_run(tmp_path):
    sentinel = tmp_path / "pwned"
    p = tmp_path / "cfg.yaml"
    p.write_text(f"name: !!python/object/apply:os.system ['touch {sentinel}']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(p)
    assert not sentinel.exists()


@pytest.mark.parametrize("name", ["../escape", "../../tmp/escape", "/abs/path", "a/b", "..", ".", "", "a\\b"])
def test_run_name_cannot_leave_runs_dir(tmp_path, name):
    with pytest.raises(ValueError, match="name"):
        make_config({"name": name, "runs_dir": str(tmp_path / "runs")})


def test_cli_run_name_traversal_exit_2_nothing_written(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["train", "--dataset", "digits", "--name", "../outside", "--runs-dir", str(runs), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "name" in err and "Traceback" not in err
    assert not (tmp_path / "outside").exists() and not runs.exists()


def test_resume_of_a_saved_config_with_a_bad_name_is_refused(tmp_path):
    """A tampered ``config.yaml`` in a run directory cannot redirect the resumed run outside ``runs_dir``."""
    from pairlab.train.loop import resolve_resume_config

    run = tmp_path / "runs" / "ok"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "../../elsewhere", "dataset": "digits"}))
    with pytest.raises(ValueError, match="name"):
        resolve_resume_config(make_config({"name": "ok", "runs_dir": str(tmp_path / "runs")}))
