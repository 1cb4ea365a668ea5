"""The torchvision stub (in a subprocess, never in the test process): any submodule and attribute
imports, stubs are inert (calling one raises), and a real torchvision is never shadowed. That lightly and
open_clip import and compute under it is checked in tests/bench/test_impls.py."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from pairlab.bench.stubs import install_torchvision_stub

SCRIPT = """
import torch
from pairlab.bench.stubs import install_torchvision_stub
install_torchvision_stub()
import torchvision
from torchvision.transforms import InterpolationMode
from torchvision.ops.misc import FrozenBatchNorm2d
assert torchvision.is_pairlab_stub and torchvision.__version__.endswith("+stub")
assert InterpolationMode.BICUBIC is not None
class Sub(FrozenBatchNorm2d):
    pass
try:
    Sub(3)(torch.zeros(1))
    raise SystemExit("stub call did not raise")
except RuntimeError as e:
    assert "inert torchvision stub" in str(e)
print("OK")
"""


def test_stub_modules_are_inert_placeholders():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("OK")


def test_refuses_to_shadow_a_real_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    with pytest.raises(RuntimeError, match="real torchvision"):
        install_torchvision_stub()
