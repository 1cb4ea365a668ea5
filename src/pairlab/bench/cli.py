"""``pairlab bench loss``: speed and memory of contrastive losses against peer libraries and the floor.

Each configuration runs in its own subprocess (see :mod:`pairlab.bench.runner`). The table shows each
time as a ratio to the fastest peer of the same form (``x peer``) and to the matrix-product floor
(``x floor``), and memory as a ratio to that peer. Dense paths on CPU are faster with huge pages:
``THP_MEM_ALLOC_ENABLE=1`` (torch allocates large buffers on 2 MiB pages, fewer page faults).

Examples:
    pairlab bench loss --n 1024 --n 4096 --form simclr
    pairlab bench loss --impl pairlab --impl open_clip --form clip --json --out loss.json
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from pairlab.bench.impls import FORMS, IMPLS
from pairlab.bench.runner import Config, Record, memory_cap, run_config, wait_quiet

DEFAULT_NS = (1024, 4096, 16384, 65536)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _time(r: dict) -> float | None:
    """The compared time: CPU time per iteration when recorded (robust on a shared machine), else wall."""
    return (r.get("extra") or {}).get("cpu_s", r.get("fwd_bwd_s"))


def _floor(r: dict) -> float | None:
    return (r.get("extra") or {}).get("floor_cpu_s", r.get("floor_s")) if "cpu_s" in (r.get("extra") or {}) \
        else r.get("floor_s")


def _peers(records: list[dict]) -> dict[tuple[str, int], dict]:
    """Fastest successful non-pairlab implementation per (form, n)."""
    best: dict[tuple[str, int], dict] = {}
    for r in records:
        if r["ok"] and r["impl"] != "floor" and not r["impl"].startswith("pairlab"):
            key = (r["form"], r["n"])
            if key not in best or _time(r) < _time(best[key]):
                best[key] = r
    return best


def rows(records: list[dict]) -> list[list[str]]:
    """Table rows: form, N, impl, wall, CPU, x peer, x floor, peak, x peer memory, loss memory, x peer loss memory,
    others' cores, status. ``peak RSS`` is the whole process (imports included); ``loss memory`` is what the
    timed loop added on top of the process before it (``loss_mib``), the fair measure of a loss's memory.

    Ratios use CPU time per iteration when the records carry it (``extra["cpu_s"]``), else wall time.
    """
    peers = _peers(records)
    out = []
    for r in records:
        if r["impl"] == "floor":
            continue
        peer = peers.get((r["form"], r["n"]))
        t, floor = _time(r), _floor(r)
        cpu = (r.get("extra") or {}).get("cpu_s")
        ratio_peer = f"{t / _time(peer):.2f}" if r["ok"] and peer else "-"
        ratio_floor = f"{t / floor:.2f}" if r["ok"] and floor else "-"
        mem_peer = f"{r['peak_mib'] / peer['peak_mib']:.2f}" if r["ok"] and peer and r.get("peak_mib") else "-"
        peak = f"{r['peak_mib']:.0f} MiB" if r.get("peak_mib") else "-"
        lm, plm = r.get("loss_mib"), (peer or {}).get("loss_mib")
        loss_mem = f"{lm:.0f} MiB" if lm is not None else "-"
        loss_peer = f"{lm / plm:.3f}" if r["ok"] and lm is not None and plm else "-"
        status = "ok" if r["ok"] else r["reason"][:60]
        out.append([r["form"], str(r["n"]), r["impl"], _fmt_s(r.get("fwd_bwd_s")), _fmt_s(cpu), ratio_peer,
                    ratio_floor, peak, mem_peer, loss_mem, loss_peer,
                    f"{r.get('others_cores', '-')}", status])
    return out


HEADER = ["form", "N", "impl", "wall (median)", "CPU (median)", "x fastest peer", "x floor", "peak RSS",
          "x peer mem", "loss memory", "x peer loss mem", "others' cores", "status"]


def markdown(records: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows(records)]
    return "\n".join(lines) + "\n"


def print_table(records: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*HEADER, title="contrastive loss, forward + backward")
    for row in rows(records):
        table.add_row(*row)
    Console(width=170).print(table)


def run_grid(
    forms: list[str], impls: list[str] | None, ns: list[int], *, d: int = 128, tau: float = 0.1, repeats: int = 3,
    budget: float = 15.0, threads: int | None = None, quiet_wait: float = 0.0, timeout: float = 1800.0,
    out: Path | None = None, echo=None, mem_cap_gib: float | None = None, warmup: int | None = None,
) -> list[dict]:
    """Floor then every implementation for each (form, n); records carry the floor of their form and n."""
    for f in forms:
        if f not in FORMS:
            raise ValueError(f"--form must be among {list(FORMS)}, got {f!r}")
    known = {i for f in forms for i in IMPLS[f]}
    for i in impls or []:
        if i not in known:
            raise ValueError(f"--impl {i!r} is not an implementation of forms {forms}; known: {sorted(known)}")
    for n in ns:
        if n < 2:
            raise ValueError(f"--n must be >= 2, got {n}")
    records: list[dict] = []
    cap = memory_cap(mem_cap_gib)
    for form in forms:
        chosen = [i for i in IMPLS[form] if impls is None or i in impls]
        for n in ns:
            if not chosen:
                continue
            base = dict(form=form, n=n, d=d, tau=tau, repeats=repeats, budget=budget, threads=threads, warmup=warmup)
            if quiet_wait:
                wait_quiet(quiet_wait)
            floor = run_config(Config(impl="floor", **base), timeout=timeout, cap=cap)
            floor_s = floor.fwd_bwd_s if floor.ok else None
            records.append(asdict(floor))
            for impl in chosen:
                if quiet_wait:
                    wait_quiet(quiet_wait)
                rec: Record = run_config(Config(impl=impl, **base), timeout=timeout, cap=cap)
                rec.extra["mem_cap_gib"] = round(cap / (1 << 30), 2)
                rec.floor_s = floor_s
                rec.extra.update({k: v for k, v in floor.extra.items() if k.startswith("floor")})
                if rec.ok and "floor_cpu_s" in rec.extra:
                    rec.extra["x_floor_cpu"] = rec.extra["cpu_s"] / rec.extra["floor_cpu_s"]
                records.append(asdict(rec))
                if echo:
                    echo(rec)
                if out is not None:
                    out.write_text(json.dumps(records, indent=1))
    return records


def register(app: typer.Typer) -> None:
    bench = typer.Typer(help="Benchmarks against peer libraries.", no_args_is_help=True)

    @bench.command("loss")
    def loss(
        n: list[int] = typer.Option(list(DEFAULT_NS), "--n", help="Batch sizes N (repeat the option)."),
        impl: list[str] = typer.Option(None, "--impl", help="Implementations (default: all of each form)."),
        form: list[str] = typer.Option(list(FORMS), "--form", help="simclr (2N x 2N) and/or clip (N x N)."),
        repeats: int = typer.Option(3, "--repeats", help="Minimum timed iterations after warm-up."),
        budget: float = typer.Option(15.0, "--budget", help="Seconds of timed work to aim for per config."),
        d: int = typer.Option(128, "--d", help="Embedding dim."),
        tau: float = typer.Option(0.1, "--tau", help="Temperature."),
        threads: int = typer.Option(None, "--threads", help="torch threads in each worker (default: torch's)."),
        quiet_wait: float = typer.Option(0.0, "--quiet-wait", help="Wait up to this many s for a quiet machine."),
        timeout: float = typer.Option(1800.0, "--timeout", help="Seconds before a configuration is abandoned."),
        mem_cap_gib: float = typer.Option(None, "--mem-cap-gib", help="Lower the address-space cap (GiB)."),
        warmup: int = typer.Option(None, "--warmup", help="Warm-up iterations (default 2 for N <= 4096, else 1)."),
        as_json: bool = typer.Option(False, "--json", help="Print the records as JSON instead of a table."),
        out: Path = typer.Option(None, "--out", help="Also write the JSON records to this file (kept up to date)."),
        md: Path = typer.Option(None, "--md", help="Also write the markdown table to this file."),
    ) -> None:
        """Time forward+backward and peak memory of contrastive losses (pairlab, peers, the floor)."""
        if repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {repeats}")
        if warmup is not None and warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {warmup}")

        def echo(rec: Record) -> None:
            if not as_json:
                state = _fmt_s(rec.fwd_bwd_s) if rec.ok else rec.reason[:80]
                typer.echo(f"{rec.form:6} N={rec.n:<6} {rec.impl:18} {state}", err=True)

        records = run_grid(list(form), list(impl) if impl else None, list(n), d=d, tau=tau, repeats=repeats,
                           budget=budget, threads=threads, quiet_wait=quiet_wait, timeout=timeout, out=out,
                           echo=echo, mem_cap_gib=mem_cap_gib, warmup=warmup)
        if md is not None:
            md.write_text(markdown(records))
        if as_json:
            typer.echo(json.dumps(records, indent=1))
        else:
            print_table(records)

    app.add_typer(bench, name="bench")
