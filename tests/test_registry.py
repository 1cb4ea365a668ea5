from __future__ import annotations

import pytest

from pairlab import registry


def test_core_objectives_registered_with_input_kind():
    data = registry.as_json()
    assert set(registry.KINDS) <= set(data)
    names = {e["name"]: e for e in data["objectives"]}
    for name in ("ntxent", "supcon", "clip", "infonce", "dcl"):
        assert name in names
        assert names[name]["input"] in {"views", "pair"}


def test_build_and_unknown_name_lists_choices():
    obj = registry.build("objectives", "ntxent", temperature=0.2)
    assert obj.temperature.value == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"unknown objective 'nope'; valid choices: \[.*'ntxent'"):
        registry.get("objectives", "nope")


def test_duplicate_name_rejected():
    class A:
        pass

    class B:
        pass

    registry.register("metrics", "__test_dup__")(A)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("metrics", "__test_dup__")(B)
    del registry._REGISTRY["metrics"]["__test_dup__"]


def test_every_registered_target_is_importable():
    import importlib

    for kind, entries in registry.as_json().items():
        for e in entries:
            mod, _, qual = e["target"].rpartition(".")
            assert getattr(importlib.import_module(mod), qual.split(".")[-1]) is registry.get(kind, e["name"]).obj
