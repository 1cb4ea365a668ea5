import json
import os
import pickle

import pytest
import torch

from pairlab.train.checkpoint import load_checkpoint, save_checkpoint, write_jsonl_atomic


def test_round_trip(tmp_path):
    state = {"model": {"w": torch.randn(3, 2)}, "rng": [torch.get_rng_state()], "step": 4, "history": [1.0, 0.5]}
    p = save_checkpoint(state, tmp_path / "sub" / "ckpt.pt")
    back = load_checkpoint(p)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["step"] == 4 and back["history"] == [1.0, 0.5]
    assert torch.equal(back["rng"][0], state["rng"][0])
    assert os.listdir(tmp_path / "sub") == ["ckpt.pt"]  # no temp file left behind


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    p = tmp_path / "ckpt.pt"
    save_checkpoint({"step": 1}, p)

    def boom(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"step": 2}, p)
    monkeypatch.undo()
    assert load_checkpoint(p)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        torch.save({"x": Evil()}, f, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_write_jsonl_atomic_replaces_whole_file_and_keeps_old_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')  # a torn last line and a row to be dropped
    (tmp_path / "metrics.jsonl.abc.tmp").write_text("left by a killed writer")
    rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": None}]
    write_jsonl_atomic(p, rows)
    assert [json.loads(x) for x in p.read_text().splitlines()] == rows
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_jsonl_atomic(p, [{"epoch": 9}])
    monkeypatch.undo()
    assert [json.loads(x) for x in p.read_text().splitlines()] == rows
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]
