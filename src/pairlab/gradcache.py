"""GradCache: exact large-batch gradients with the memory of one chunk of encoder activations.

Paper: Gao, Zhang, Han, Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup" (RepL4NLP 2021, arXiv:2101.06983). A contrastive loss couples every example to the whole batch,
so plain gradient accumulation is not a big batch. GradCache splits the backward at the embeddings::

    1. z_c = encode(x_c) under no_grad for every chunk c, saving each chunk's RNG state
    2. z = cat(z_c) as a leaf; L = loss_fn(z); L.backward() -> dL/dz (and dL/d(loss parameters))
    3. for every chunk: z_c = encode(x_c) again, with the chunk's RNG state replayed, and
       backward(z_c, dL/dz_c): the parameter gradients accumulate to exactly dL/dtheta

``dL/dtheta = sum_c (dz_c/dtheta)^T dL/dz_c`` is the chain rule, so the result equals the
full-batch gradient (to float rounding) provided step 3 recomputes the *same* ``z_c``: the RNG state of
step 1 is replayed (dropout, random augmentation inside ``encode``), CPU and the CUDA devices in use.
Cost: one extra forward per example; peak memory is one chunk's activations plus ``z`` and the loss.

Deviations from / fixes of the official code (``luyug/GradCache``) and its copies (prior-art §3, §5.1):
    - With a DDP ``model``, every chunk but the last runs under ``model.no_sync()``, so gradients are
      all-reduced once per step, not once per chunk (sentence-transformers #4027). The official code
      offers this as ``no_sync_except_last``; here it is always on.
    - The surrogate is ``torch.autograd.backward(z_c, grad)`` with the cached gradient cast to
      ``z_c``'s dtype, not ``torch.dot`` of flattened tensors, so fp16/bf16 embeddings under autocast
      work (GradCache #17).
    - Parameters of the loss itself (a learnable temperature) get their gradient from step 2.
    - Not exact for encoders whose output for one example depends on the others in its chunk
      (BatchNorm in train mode: chunk statistics differ from full-batch statistics, and running
      statistics are updated twice per step); that is a property of chunking, not of the cache.

On several ranks, every rank must use the same number of chunks (same local batch size and
``chunk_size``): DDP may run collectives in each forward (buffer broadcast).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

Structure = Any  # a Tensor, or a tuple/list/dict of them


# --------------------------------------------------------------------------------------------- structures
def _is_container(x: Any) -> bool:
    return isinstance(x, Mapping) or (
        isinstance(x, (tuple, list)) and len(x) > 0 and all(isinstance(v, (torch.Tensor, Mapping, tuple)) for v in x)
    )


def _batch_size(x: Any, name: str = "inputs") -> int:
    """First-dim size shared by every tensor of ``x`` (a list of raw items counts as a batch)."""
    if isinstance(x, torch.Tensor):
        if x.ndim == 0:
            raise ValueError(f"{name} must have a batch dim (dim 0), got a 0-dim tensor")
        return x.shape[0]
    if _is_container(x):
        items = x.items() if isinstance(x, Mapping) else enumerate(x)
        sizes = {k: _batch_size(v, f"{name}[{k!r}]") for k, v in items}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every tensor of {name} must have the same batch size (dim 0), got {sizes}")
        return next(iter(sizes.values()))
    if isinstance(x, (list, tuple)):
        return len(x)
    raise TypeError(f"{name} must be a Tensor, a tuple/list/dict of Tensors or a list of items, got {type(x).__name__}")


def _slice(x: Any, s: int, e: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[s:e]
    if isinstance(x, Mapping):
        out = {k: _slice(v, s, e) for k, v in x.items()}
        try:  # keep mapping subclasses (e.g. a tokenizer's BatchEncoding)
            return out if type(x) is dict else type(x)(out)
        except TypeError:
            return out
    if _is_container(x):
        return type(x)(_slice(v, s, e) for v in x)
    return x[s:e]


def _flatten(z: Any, name: str = "encode(...)") -> tuple[list[torch.Tensor], Callable[[list[torch.Tensor]], Any]]:
    """Tensors of an encoder output (Tensor, tuple/list or dict of Tensors) and how to rebuild it."""
    if isinstance(z, torch.Tensor):
        return [z], lambda ts: ts[0]
    if isinstance(z, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in z):
        kind = type(z)
        return list(z), lambda ts: kind(ts)
    if isinstance(z, Mapping) and all(isinstance(t, torch.Tensor) for t in z.values()):
        keys = list(z)
        return [z[k] for k in keys], lambda ts: dict(zip(keys, ts, strict=True))
    raise TypeError(f"{name} must return a Tensor or a tuple/list/dict of Tensors, got {type(z).__name__}")


# --------------------------------------------------------------------------------------------- RNG
def _cuda_devices(inputs: Any) -> list[int]:
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return []
    devs = {torch.cuda.current_device()}

    def visit(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            if x.is_cuda:
                devs.add(x.device.index if x.device.index is not None else torch.cuda.current_device())
        elif isinstance(x, Mapping):
            for v in x.values():
                visit(v)
        elif isinstance(x, (tuple, list)):
            for v in x:
                visit(v)

    visit(inputs)
    return sorted(devs)


class _RngState:
    """CPU and CUDA RNG states at one point, replayable without disturbing the caller's RNG."""

    def __init__(self, devices: list[int]):
        self.devices = devices
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in devices]

    @contextlib.contextmanager
    def replay(self):
        with torch.random.fork_rng(devices=self.devices, enabled=True):
            torch.set_rng_state(self.cpu)
            for d, s in zip(self.devices, self.cuda, strict=True):
                torch.cuda.set_rng_state(s, d)
            yield


# --------------------------------------------------------------------------------------------- step
def _is_ddp(model: nn.Module | None) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


def grad_cache_step(
    encode: Callable[[Any], Structure],
    inputs: Any,
    loss_fn: Callable[[Structure], torch.Tensor],
    chunk_size: int,
    model: nn.Module | None = None,
    scaler: Any = None,
    return_embeddings: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Structure]:
    """One GradCache forward/backward: accumulate into ``.grad`` the exact full-batch gradients.

    Args:
        encode: maps a chunk of ``inputs`` (same structure, first dim sliced) to embeddings: a Tensor
            (e.g. ``z [c, K, D]``) or a tuple/list/dict of Tensors (e.g. CLIP's ``(a, b)``), each with
            the chunk's rows first. Any randomness inside (dropout, augmentation) must use torch's RNG.
        inputs: the full batch: a Tensor, a tuple/list/dict of Tensors (all with the same dim 0), or a
            list of raw items (e.g. strings, sliced as a list).
        loss_fn: maps the concatenated embeddings (same structure as ``encode``'s output) to a scalar,
            e.g. ``lambda z: ntxent(z, labels)``. Parameters it uses get their gradient too.
        chunk_size: rows per chunk (the last chunk may be smaller).
        model: the DDP-wrapped module used by ``encode``, if any: all chunks but the last run under
            ``model.no_sync()`` so gradients are all-reduced once.
        scaler: an optional ``torch.amp.GradScaler``; the loss is scaled before its backward, so the
            cached and the parameter gradients are scaled as in a plain AMP step.
        return_embeddings: also return the full-batch embeddings (detached, same structure as
            ``encode``'s output), e.g. to enqueue keys into a :class:`~pairlab.candidates.queue.Queue`.

    Returns:
        The loss, detached (and the embeddings if ``return_embeddings``). Gradients are *accumulated*
        into ``.grad`` (zero them before, step after).

    Examples:
        >>> obj = NTXent(0.1)
        >>> loss = grad_cache_step(lambda x: model(augment(x)), x, lambda z: obj(z), chunk_size=64)
        >>> opt.step(); opt.zero_grad()
    """
    if not callable(encode) or not callable(loss_fn):
        raise TypeError("encode and loss_fn must be callables")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    n = _batch_size(inputs)
    if n == 0:
        raise ValueError("inputs has an empty batch (dim 0 is 0)")
    bounds = [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    devices = _cuda_devices(inputs)

    # 1. encode every chunk without graph, remembering the RNG state it started from
    states: list[_RngState] = []
    outs: list[list[torch.Tensor]] = []
    rebuild = None
    with torch.no_grad():
        for s, e in bounds:
            states.append(_RngState(devices))
            flat, rebuild = _flatten(encode(_slice(inputs, s, e)))
            for t in flat:
                if t.ndim == 0 or t.shape[0] != e - s:
                    raise ValueError(
                        f"encode must return tensors with the chunk's {e - s} rows first, got shape {tuple(t.shape)}"
                    )
            if outs and len(flat) != len(outs[0]):
                raise ValueError("encode returned a different number of tensors for different chunks")
            outs.append(flat)
    assert rebuild is not None

    # 2. full-batch loss on leaf embeddings: caches dL/dz (and fills the loss's own parameter grads)
    leaves = [torch.cat([o[i] for o in outs]).detach().requires_grad_() for i in range(len(outs[0]))]
    del outs
    with torch.enable_grad():
        loss = loss_fn(rebuild(leaves))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
                         f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
    if not loss.requires_grad:
        raise ValueError("loss_fn returned a tensor that does not depend on the embeddings (no grad_fn)")
    (scaler.scale(loss) if scaler is not None else loss).backward()
    grads = [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]
    embeddings = rebuild([leaf.detach() for leaf in leaves]) if return_embeddings else None
    del leaves

    # 3. re-encode each chunk with its RNG replayed and push the cached gradient through the encoder
    last = len(bounds) - 1
    for c, (s, e) in enumerate(bounds):
        sync = contextlib.nullcontext() if (c == last or not _is_ddp(model)) else model.no_sync()
        with sync, states[c].replay():
            flat, _ = _flatten(encode(_slice(inputs, s, e)))
            pairs = [(t, g[s:e].to(t.dtype)) for t, g in zip(flat, grads, strict=True) if t.requires_grad]
            if not pairs:
                raise ValueError("encode returned tensors that do not require grad in the replay pass")
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    return (loss.detach(), embeddings) if return_embeddings else loss.detach()
