"""Atomic, checksummed checkpoints (DESIGN §4): temp file in the same folder, then ``os.replace``.

A run killed while writing leaves either the previous checkpoint or the new one, never a torn file. The
checkpoint it replaces is kept as ``<stem>.prev<suffix>``, so a file damaged later (truncated by a full disk,
a bit flip, a copy cut short) is detected by its SHA-256 and :func:`load_latest` falls back to the previous
good one. Loading uses ``torch.load(weights_only=True)``: a checkpoint holds only tensors and plain containers
(state dicts, RNG state as a uint8 tensor, ints, floats, strings, lists, dicts). On disk the state is
serialised once, hashed, and stored as ``{"format", "sha256", "payload": uint8 tensor}``; files without this
wrapper (older checkpoints) load as before, without the checksum.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "pairlab-checkpoint-v1"


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read back intact (truncated, corrupted, wrong checksum)."""


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint holding objects that ``weights_only=True`` refuses (a ``ValueError`` too, so the CLI reports it)."""


def previous_path(path: str | os.PathLike) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint it replaced: ``checkpoint.pt -> checkpoint.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (tmp file in the same directory + ``os.replace``).

    The file it replaces becomes :func:`previous_path`; temp files left by a killed writer are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    wrapped = {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
               "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    for stale in path.parent.glob(path.name + ".*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(wrapped, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_jsonl_atomic(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Replace ``path`` by the JSON lines of ``rows`` atomically (tmp file in the same directory + ``os.replace``).

    Used for a run's per-epoch files, rewritten whole from the rows kept in the checkpoint: a run killed between
    its checkpoint and this write gets the missing rows back on ``--resume``, never a torn or repeated line.
    """
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(path.name + ".*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _corrupt(path: Path, why: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"checkpoint {str(path)!r} is truncated or corrupted ({why})")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary pickled objects), verifying its checksum.

    Raises ``FileNotFoundError`` if missing, :class:`CorruptCheckpointError` (a ``ValueError``) if damaged, and
    ``pickle.UnpicklingError`` if it holds objects that ``weights_only`` refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e) or "Unsupported global" in str(e):  # well-formed, but objects weights_only refuses
            line = next((x for x in str(e).splitlines() if "GLOBAL" in x), "").strip()
            raise UnsafeCheckpointError(f"checkpoint {str(path)!r} holds objects that weights_only=True refuses to "
                                        f"load (not loaded: {line})") from None
        raise _corrupt(path, "unreadable pickle data") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise _corrupt(path, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'no data'}") from None
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        return obj  # an unwrapped (older) checkpoint: no checksum to verify
    payload = obj.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise _corrupt(path, "no payload")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != obj.get("sha256"):
        raise _corrupt(path, "SHA-256 mismatch")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_latest(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The checkpoint at ``path``, or the previous good one if ``path`` is missing or damaged (with a warning).

    Returns ``(state, path_used)``. Raises :class:`CorruptCheckpointError` naming both files if neither is
    readable, ``FileNotFoundError`` if neither exists.
    """
    path = Path(path)
    prev = previous_path(path)
    try:
        return load_checkpoint(path), path
    except (CorruptCheckpointError, FileNotFoundError) as first:
        if not prev.is_file():
            raise
        try:
            state = load_checkpoint(prev)
        except CorruptCheckpointError as second:
            raise CorruptCheckpointError(f"{first}; the previous one is unusable too: {second}") from None
        print(f"pairlab: warning: {first}; resuming from the previous good checkpoint {str(prev)!r} "
              f"(step {state.get('step')})", file=sys.stderr)
        return state, prev
