"""Inert ``torchvision`` stubs for benchmark subprocesses.

lightly and open_clip import torchvision at package import time, but their loss classes never use it,
and PyPI's torchvision wheel does not load against the CPU torch of this project. Inside a benchmark
subprocess only, :func:`install_torchvision_stub` serves every ``torchvision.*`` module as an inert
stub: any attribute is a placeholder class that can be subclassed, instantiated and chained
(``torchvision.transforms.InterpolationMode.BICUBIC``); calling an instance raises, so a stub that is
actually used fails loudly instead of computing something wrong. The peer loss code runs unmodified.
Never install it in a process that may need the real torchvision.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

STUB_VERSION = "0.28.0+stub"


class _StubMeta(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_class(f"{cls.__qualname__}.{name}")


class _Placeholder(metaclass=_StubMeta):
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__qualname__} is an inert torchvision stub (pairlab benchmark)")


def _stub_class(qualname: str) -> type:
    cls = _StubMeta(qualname.rsplit(".", 1)[-1], (_Placeholder,), {"__module__": "torchvision"})
    cls.__qualname__ = qualname
    return cls


class StubModule(types.ModuleType):
    """A torchvision module whose every attribute is a placeholder class."""

    __version__ = STUB_VERSION
    is_pairlab_stub = True

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _stub_class(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        return None


def install_torchvision_stub() -> None:
    """Serve ``torchvision`` and all its submodules as inert stubs in this process (idempotent)."""
    real = sys.modules.get("torchvision")
    if real is not None and not getattr(real, "is_pairlab_stub", False):
        raise RuntimeError("a real torchvision is already imported; refusing to shadow it")
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
