"""Run one benchmark configuration per subprocess and collect JSON records.

Method (as in ``specs/performance.md``):

- Every configuration runs in a fresh process (``python -m pairlab.bench.runner SPEC_JSON``), so its
  peak RSS (``ru_maxrss``, whole process including imports) belongs to it alone, under
  ``RLIMIT_AS = min(20 GiB, MemAvailable - 1 GiB)``: an over-large configuration fails with a clean
  allocation error (``ok=false``) instead of waking the OOM killer.
- Time: one forward call on ``(x0, x1)`` plus ``backward()``, wall clock. Warm-up 2 iterations for
  ``N <= 4096``, 1 above (``torch.compile`` compiles there); then repeats until at least ``repeats``
  iterations and ``budget`` seconds (at most 30). Reported: median, min, max.
- Floor: the three matrix products of forward + backward at full size (``S = A A^T``, ``S A``,
  ``S^T A``; ``A`` is ``2N x d`` for SimCLR, ``N x d`` for CLIP), each the best of two, in its own
  process; above :data:`FLOOR_MAX_ROWS` rows it is extrapolated from that size by FLOPs
  (``floor_extrapolated``). SimCLR also reports ``floor_sym_s``, the two-product floor of a kernel that
  uses the symmetry of ``A A^T``.
- Loss memory: ``loss_mib`` is the peak RSS *during the warm-up and timed loop* minus the RSS just before them
  (after imports, one forward + backward on a 256-row instance that pages in the code paths, and the inputs):
  the memory the loss itself needs, free of the ~250 MiB that importing torch costs every
  process. The peak watermark (``VmHWM``) is reset before the loop by writing ``5`` to ``/proc/self/clear_refs``
  (Linux); where that fails ``loss_mib`` falls back to ``peak_mib - baseline_mib`` (a peak reached while importing
  can then hide the loss's) and ``extra["loss_mib_exact"]`` is false.
- CPU time: each record also carries ``extra["cpu_s"]``, the median process CPU time (user + sys,
  all threads) per iteration. With ``--threads 1`` on an oversubscribed machine it is the robust
  measure of work (wall time then mostly measures the scheduler); page-fault time is sys time, so it
  is included.
- Load: the machine is shared, so each record carries the 1-minute load average and ``others_cores``,
  the CPU used by other processes during the run (system busy time minus this run's own CPU time,
  over wall time). ``--quiet-wait`` waits for ``others_cores < 0.25`` before each configuration.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

FLOOR_MAX_ROWS = 16384
MAX_REPEATS = 30
RECORD_KEYS = ("impl", "form", "n", "d", "fwd_bwd_s", "peak_mib", "ok", "reason", "floor_s")


@dataclass
class Config:
    """One measurement: ``impl`` in ``form`` at ``n`` (``impl="floor"`` measures the matrix-product floor)."""

    impl: str
    form: str
    n: int
    d: int = 128
    tau: float = 0.1
    repeats: int = 3
    budget: float = 15.0
    warmup: int | None = None
    threads: int | None = None


@dataclass
class Record:
    impl: str
    form: str
    n: int
    d: int
    fwd_bwd_s: float | None = None
    peak_mib: float | None = None
    ok: bool = False
    reason: str = ""
    floor_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    repeats: int = 0
    baseline_mib: float | None = None
    loss_mib: float | None = None
    loss: float | None = None
    threads: int | None = None
    loadavg: float | None = None
    others_cores: float | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- worker side (inside the subprocess)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm() -> bool:
    """Reset this process's peak-RSS watermark (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mib("VmHWM") <= _rss_mib() + 1.0
    except OSError:
        return False


def measure_floor(cfg: Config) -> Record:
    import torch

    rows = 2 * cfg.n if cfg.form == "simclr" else cfg.n
    m = min(rows, FLOOR_MAX_ROWS)
    a = torch.randn(m, cfg.d)
    s = torch.empty(m, m)
    r = torch.empty(m, cfg.d)
    best = [float("inf")] * 3
    best_cpu = [float("inf")] * 3
    for _ in range(2):
        for k, fn in enumerate((lambda: torch.mm(a, a.T, out=s), lambda: torch.mm(s, a, out=r),
                                lambda: torch.mm(s.T, a, out=r))):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
            best_cpu[k] = min(best_cpu[k], time.process_time() - c0)
    floor = sum(best) * (rows / m) ** 2
    rec = Record("floor", cfg.form, cfg.n, cfg.d, fwd_bwd_s=floor, ok=True, floor_s=floor, repeats=2,
                 peak_mib=_peak_mib(), threads=torch.get_num_threads())
    floor_cpu = sum(best_cpu) * (rows / m) ** 2
    rec.extra = {"floor_extrapolated": rows > m, "gemm_s": best, "gflops": 6 * m * m * cfg.d / sum(best) / 1e9,
                 "cpu_s": floor_cpu, "floor_cpu_s": floor_cpu}
    if cfg.form == "simclr":
        rec.extra["floor_sym_s"] = floor * 2 / 3
    return rec


def measure(cfg: Config) -> Record:
    """Time and measure one configuration in this process."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.impl == "floor":
        return measure_floor(cfg)
    from pairlab.bench.impls import PeerUnavailable, inputs, make

    rec = Record(cfg.impl, cfg.form, cfg.n, cfg.d, threads=torch.get_num_threads())
    try:
        step = make(cfg.impl, cfg.form, cfg.tau)
    except PeerUnavailable as e:
        rec.reason = f"not available: {e}"
        return rec
    # page in the implementation's code paths (and its allocator pools) on a small instance first, so that
    # loss_mib measures the memory that grows with N, not the one-time cost of touching libtorch's kernels
    w0, w1 = inputs(min(cfg.n, 256), cfg.d)
    try:
        step(w0, w1).backward()
    except (MemoryError, RuntimeError):
        pass  # the timed loop reports the failure
    del w0, w1
    x0, x1 = inputs(cfg.n, cfg.d)
    rec.baseline_mib = _rss_mib()
    before = _peak_mib()  # the whole-process peak so far (imports): the watermark reset below forgets it
    exact = _reset_hwm()

    def process_peak() -> float:
        return max(before, _peak_mib(), _status_mib("VmHWM"), rec.baseline_mib or 0.0)

    def loss_mib() -> float:
        top = _status_mib("VmHWM") if exact else _peak_mib()
        return max(top - (rec.baseline_mib or 0.0), 0.0)

    warmup = cfg.warmup if cfg.warmup is not None else (2 if cfg.n <= 4096 else 1)
    times: list[float] = []
    cpu: list[float] = []
    loss = None
    try:
        for i in range(warmup + MAX_REPEATS):
            c0, t0 = time.process_time(), time.perf_counter()
            loss = step(x0, x1)
            loss.backward()
            dt = time.perf_counter() - t0
            dc = time.process_time() - c0
            x0.grad = x1.grad = None
            if i >= warmup:
                times.append(dt)
                cpu.append(dc)
                if len(times) >= cfg.repeats and sum(times) >= cfg.budget:
                    break
    except (MemoryError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        rec.reason = f"failed after {len(times)} timed iterations: {type(e).__name__}: {msg}"
        rec.peak_mib = process_peak()
        rec.loss_mib = loss_mib()
        return rec
    rec.ok = True
    rec.fwd_bwd_s = statistics.median(times)
    rec.min_s, rec.max_s, rec.repeats = min(times), max(times), len(times)
    rec.loss = float(loss.detach())
    rec.peak_mib = process_peak()
    rec.loss_mib = loss_mib()
    rec.extra = {"cpu_s": statistics.median(cpu), "cpu_min_s": min(cpu), "cpu_max_s": max(cpu),
                 "loss_mib_exact": exact}
    return rec


# ---------------------------------------------------------------- parent side


def memory_cap(limit_gib: float | None = None) -> int:
    """``min(20 GiB, MemAvailable - 1 GiB, limit_gib)`` in bytes."""
    avail = 20 << 30
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    cap = min(20 << 30, avail - (1 << 30))
    if limit_gib is not None:
        cap = min(cap, int(limit_gib * (1 << 30)))
    return max(1 << 30, cap)


def _busy_seconds() -> float:
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(v) for v in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def others_cores(window: float = 1.0) -> float:
    """Cores busy over ``window`` seconds while this process sleeps: the load from others."""
    b0 = _busy_seconds()
    time.sleep(window)
    return (_busy_seconds() - b0) / window


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait up to ``max_wait`` s for ``others_cores < threshold``; returns the last sample."""
    deadline = time.monotonic() + max_wait
    sample = others_cores()
    while sample >= threshold and time.monotonic() < deadline:
        sample = others_cores()
    return sample


def run_config(cfg: Config, timeout: float = 1800.0, cap: int | None = None) -> Record:
    """Run ``cfg`` in a fresh subprocess under the memory cap; always returns a record."""
    cap = memory_cap() if cap is None else cap

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    load = os.getloadavg()[0]
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, t0 = _busy_seconds(), time.monotonic()
    cmd = [sys.executable, "-m", "pairlab.bench.runner", json.dumps(asdict(cfg))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit, env=env)
        rec = None
        for line in reversed(proc.stdout.strip().splitlines()):
            if line.startswith("{"):
                rec = Record(**json.loads(line))
                break
        if rec is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            rec = Record(cfg.impl, cfg.form, cfg.n, cfg.d,
                         reason=f"worker exited with code {proc.returncode}: {' | '.join(tail)[:400]}")
    except subprocess.TimeoutExpired:
        rec = Record(cfg.impl, cfg.form, cfg.n, cfg.d, reason=f"timed out after {timeout:.0f} s")
    wall = time.monotonic() - t0
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    rec.loadavg = round(load, 2)
    rec.others_cores = round(max(0.0, (_busy_seconds() - busy0 - own) / max(wall, 1e-9)), 2)
    return rec


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: ``python -m pairlab.bench.runner '{"impl": ..., ...}'`` prints one JSON record."""
    argv = sys.argv[1:] if argv is None else argv
    cfg = Config(**json.loads(argv[0]))
    rec = measure(cfg)
    print(json.dumps(asdict(rec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
