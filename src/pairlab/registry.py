"""Name -> component registry, so the CLI and config files reach every component.

Components register themselves with a decorator in their own module::

    @register("objectives", "ntxent", input="views", summary="SimCLR NT-Xent")
    class NTXent(nn.Module): ...

Kinds: ``objectives``, ``candidates``, ``weights``, ``miners``, ``datasets``, ``metrics``.
``pairlab list --json`` prints them all. Discovery imports every module of the packages in
:data:`PACKAGES` (each module keeps heavy imports, e.g. transformers, inside functions).

Objective metadata ``input`` tells the training loop how to call it:
``"views"`` -> ``obj(z, labels=labels)`` with ``z: [B, K, D]``; ``"pair"`` -> ``obj(z[:, 0], z[:, 1])``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any

KINDS = ("objectives", "candidates", "weights", "miners", "datasets", "metrics")
PACKAGES = (
    "pairlab.objectives",
    "pairlab.candidates",
    "pairlab.weights",
    "pairlab.miners",
    "pairlab.data",
    "pairlab.metrics",
    "pairlab.domains",
)


@dataclass
class Entry:
    kind: str
    name: str
    obj: Any
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (tuples in the metadata become lists, as a JSON round trip gives them)."""
        return {
            "name": self.name,
            "target": f"{self.obj.__module__}.{self.obj.__qualname__}",
            "summary": self.summary,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in self.meta.items()},
        }


_REGISTRY: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
_discovered = False


def register(kind: str, name: str, summary: str = "", **meta: Any):
    """Class/function decorator adding a component under ``kind``/``name``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    reserved = {"name", "target", "summary"} & set(meta)
    if reserved:
        raise ValueError(f"metadata keys {sorted(reserved)} are reserved by the registry; pick another name")

    def deco(obj: Any) -> Any:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing.obj is not obj:
            same = f"{existing.obj.__module__}.{existing.obj.__qualname__}" == f"{obj.__module__}.{obj.__qualname__}"
            if not same:
                raise ValueError(f"{kind} name {name!r} is already registered by {existing.obj!r}")
        doc = (obj.__doc__ or "").strip().splitlines()
        _REGISTRY[kind][name] = Entry(kind, name, obj, summary or (doc[0] if doc else ""), dict(meta))
        return obj

    return deco


def discover() -> None:
    """Import every module of the component packages once (idempotent)."""
    global _discovered
    if _discovered:
        return
    for pkg_name in PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ModuleNotFoundError as e:
            if e.name == pkg_name:
                continue
            raise
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + "."):
            importlib.import_module(info.name)
    _discovered = True


def available(kind: str) -> list[str]:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    discover()
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> Entry:
    """Look up a component; unknown names raise a ValueError listing the valid choices."""
    choices = available(kind)
    if name not in _REGISTRY[kind]:
        raise ValueError(f"unknown {kind[:-1] if kind.endswith('s') else kind} {name!r}; valid choices: {choices}")
    return _REGISTRY[kind][name]


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Instantiate a registered component with keyword arguments."""
    return get(kind, name).obj(**kwargs)


def as_json() -> dict[str, list[dict[str, Any]]]:
    discover()
    return {k: [_REGISTRY[k][n].as_dict() for n in sorted(_REGISTRY[k])] for k in KINDS}


def input_kind(objective: Any) -> str:
    """The registered ``input`` kind of an objective instance (how a training loop calls it)."""
    discover()
    for entry in _REGISTRY["objectives"].values():
        if isinstance(entry.obj, type) and type(objective) is entry.obj:
            return str(entry.meta.get("input", "views"))
    raise ValueError(f"{type(objective).__name__} is not a registered pairlab objective")
