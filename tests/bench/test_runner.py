"""Benchmark records: schema, a tiny real run per form in a subprocess, the floor, failures."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from pairlab.bench import impls, runner
from pairlab.bench.runner import RECORD_KEYS, Config, measure, memory_cap, run_config


@pytest.mark.parametrize("impl,form", [("pairlab", "simclr"), ("info_nce", "clip")])
def test_tiny_run_in_subprocess(impl, form):
    rec = run_config(Config(impl=impl, form=form, n=24, d=8, repeats=2, budget=0.0, threads=1), timeout=300)
    d = asdict(rec)
    assert set(RECORD_KEYS) <= set(d)
    assert rec.ok, rec.reason
    assert rec.repeats == 2 and rec.min_s <= rec.fwd_bwd_s <= rec.max_s
    assert rec.extra["cpu_min_s"] <= rec.extra["cpu_s"] <= rec.extra["cpu_max_s"]
    assert 50 < rec.peak_mib < 4096 and rec.baseline_mib <= rec.peak_mib
    assert rec.others_cores is not None and rec.loadavg is not None and rec.threads == 1
    x0, x1 = impls.inputs(24, 8)
    ref = impls.make("pairlab-dense", form, 0.1)(x0, x1)
    assert rec.loss == pytest.approx(float(ref.detach()), rel=1e-5)


def test_floor_record():
    rec = measure(Config(impl="floor", form="simclr", n=64, d=16))
    assert rec.ok and rec.floor_s == rec.fwd_bwd_s > 0
    assert rec.extra["floor_sym_s"] == pytest.approx(rec.floor_s * 2 / 3)
    assert rec.extra["floor_extrapolated"] is False and rec.extra["floor_cpu_s"] > 0


def test_floor_extrapolates_beyond_max_rows(monkeypatch):
    monkeypatch.setattr(runner, "FLOOR_MAX_ROWS", 32)
    rec = measure(Config(impl="floor", form="clip", n=64, d=16))
    assert rec.extra["floor_extrapolated"] is True
    assert rec.floor_s == pytest.approx(sum(rec.extra["gemm_s"]) * 4)


def test_unavailable_peer_is_a_failed_record(monkeypatch):
    def missing(name, stub=False):
        raise impls.PeerUnavailable(f"cannot import {name}: ModuleNotFoundError")

    monkeypatch.setattr(impls, "_import", missing)
    rec = measure(Config(impl="info_nce", form="clip", n=8, d=4))
    assert not rec.ok and "not available" in rec.reason and rec.fwd_bwd_s is None


def test_out_of_memory_is_a_clean_failure():
    """plain cross-entropy at N=30000 needs 14 GiB of logits: under a 3 GiB cap it fails cleanly."""
    rec = run_config(Config(impl="torch-ce", form="simclr", n=30000, d=8, repeats=1, budget=0.0, threads=1),
                     timeout=300, cap=3 << 30)
    assert not rec.ok and "failed after 0 timed iterations" in rec.reason
    assert rec.fwd_bwd_s is None and rec.peak_mib < 3 * 1024


def test_memory_cap_bounds():
    assert (1 << 30) <= memory_cap() <= (20 << 30)
    assert memory_cap(1.5) <= int(1.5 * (1 << 30))


def test_loss_memory_watermark_sees_a_transient_allocation():
    """After the watermark reset, a freed 200 MiB tensor still shows as ~200 MiB of peak over the baseline."""
    import torch

    from pairlab.bench import runner

    if not runner._reset_hwm():
        pytest.skip("this kernel does not allow resetting VmHWM (/proc/self/clear_refs)")
    base = runner._rss_mib()
    assert runner._status_mib("VmHWM") <= base + 1.0
    x = torch.ones(50 * 2**20)  # 200 MiB, touched
    del x
    grown = runner._status_mib("VmHWM") - base
    assert 190 <= grown <= 230, grown
    assert runner._rss_mib() < base + 50  # freed again, yet the peak remembers it


def test_tiny_run_records_loss_memory():
    rec = run_config(Config(impl="pairlab", form="clip", n=64, d=8, repeats=1, budget=0.0, threads=1), timeout=300)
    assert rec.ok, rec.reason
    assert rec.loss_mib is not None and 0 <= rec.loss_mib < rec.peak_mib and rec.extra["loss_mib_exact"]
