"""Hardness report: group scores and shares vs brute-force loops; MoCHi/FT claims; CLI."""

from __future__ import annotations

import json

import torch

from pairlab.candidates.base import Candidates
from pairlab.candidates.ft import FeatureTransformation
from pairlab.candidates.mochi import MoCHi
from pairlab.cli import main
from pairlab.hardness import clustered_views, hardness_report, plot_hardness, report_from_candidates


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_mochi_synthetic_negatives_are_harder_than_the_in_batch_ones() -> None:
    z, labels = clustered_views(batch=96, dim=16, classes=6, seed=0)
    rep = hardness_report(MoCHi(num_hard=16, num_mix=16, num_query_mix=8, seed=0), z, labels)
    d = rep.to_dict()["groups"]
    assert d["synth_neg"]["mean"] > d["real_neg"]["mean"] + 0.2
    assert rep.share_harder["synth_neg"] > 0.1  # a share beats even the hardest real negative
    # hardest negatives share the class more often: MoCHi's false negatives (the paper's diagnostic)
    assert rep.false_negative_rate["synth_neg"] > rep.false_negative_rate["real_neg"]


def test_ft_extrapolated_positives_are_harder_than_the_real_ones() -> None:
    z, labels = clustered_views(batch=64, dim=16, seed=1)
    for sim in ("cosine", "dot"):
        rep = hardness_report(FeatureTransformation(seed=0), z, labels, similarity=sim)
        d = rep.to_dict()["groups"]
        assert d["synth_pos"]["mean"] < d["real_pos"]["mean"]
        assert rep.share_harder["synth_pos"] == 1.0  # lambda > 1: every extrapolated pair is harder


def test_report_matches_brute_force_loops() -> None:
    torch.manual_seed(0)
    b, k, d, m = 4, 2, 3, 5
    z = torch.randn(b, k, d, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2])
    extra = torch.randn(m, d, dtype=torch.float64)
    mask = torch.rand(b * k, m) > 0.4
    positives = torch.zeros(b * k, m, dtype=torch.bool)
    positives[0, 0] = positives[3, 1] = True
    oracle = torch.tensor([0, 1, 2, 0, 1])
    views = torch.cat([z, torch.randn(b, 1, d, dtype=torch.float64)], dim=1)  # one appended view
    def rows3(x: torch.Tensor) -> torch.Tensor:  # [B*K, M] -> [B*(K+1), M]: rows of the appended view are extra
        return torch.cat([x.view(b, k, m), torch.rand(b, 1, m) > 0.5], dim=1).reshape(b * (k + 1), m)

    c = Candidates(extra=extra, mask=rows3(mask), positives=rows3(positives), oracle_labels=oracle, views=views)
    rep = report_from_candidates(z, c, labels)
    flat, e = _unit(z.reshape(b * k, d)), _unit(extra)
    vf = _unit(views)
    neg_share, fn, n_vis, sp, sp_h, n_real_neg, fn_real = 0, 0, 0, [], 0, 0, 0
    for r in range(b * k):
        negs = [float(flat[r] @ flat[j]) for j in range(b * k) if j // k != r // k]
        for j in range(b * k):
            if j // k != r // k:
                n_real_neg += 1
                fn_real += int(labels[j // k] == labels[r // k])
        hardest_neg = max(negs)
        hardest_pos = min(float(flat[r] @ flat[j]) for j in range(b * k) if j // k == r // k and j != r)
        for col in range(m):
            s = float(flat[r] @ e[col])
            if positives[r, col]:
                sp.append(s)
                sp_h += int(s < hardest_pos)
            elif mask[r, col]:
                n_vis += 1
                neg_share += int(s > hardest_neg)
                fn += int(oracle[col] == labels[r // k])
    for i in range(b):  # appended view 2 vs views 0, 1 (both orders)
        hp = min(float(flat[i * k + a] @ flat[i * k + bb]) for a in range(k) for bb in range(k) if a != bb)
        for a in range(k):
            s = float(vf[i, 2] @ vf[i, a])
            sp += [s, s]
            sp_h += 2 * int(s < hp)
    assert rep.scores["synth_neg"].numel() == n_vis
    assert abs(rep.share_harder["synth_neg"] - neg_share / n_vis) < 1e-12
    assert abs(rep.false_negative_rate["synth_neg"] - fn / n_vis) < 1e-12
    assert abs(rep.false_negative_rate["real_neg"] - fn_real / n_real_neg) < 1e-12
    assert sorted(rep.scores["synth_pos"].tolist()) == sorted(torch.tensor(sp).float().tolist())
    assert abs(rep.share_harder["synth_pos"] - sp_h / len(sp)) < 1e-12


def test_plot_and_cli(tmp_path) -> None:
    z, labels = clustered_views(batch=32, dim=8, seed=0)
    rep = hardness_report(MoCHi(num_hard=4, num_mix=2, num_query_mix=1, seed=0), z, labels)
    assert "synth_neg" in rep.format()
    png = plot_hardness(rep, tmp_path / "h.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "cli.png"
    assert main(["hardness", "mochi", "--set", "num_hard=4", "--set", "num_mix=2", "--batch", "32",
                 "--plot", str(out)]) == 0
    assert out.exists()
    torch.save({"z": z, "labels": labels}, tmp_path / "e.pt")
    assert main(["hardness", "ft", "--embeddings", str(tmp_path / "e.pt")]) == 0
    assert main(["hardness", "mochi", "--set", "num_hard"]) == 2
    assert main(["hardness", "nope"]) == 2
    assert main(["hardness", "ft", "--embeddings", str(tmp_path / "missing.pt")]) == 2


def test_cli_json(capsys) -> None:
    assert main(["hardness", "ft", "--batch", "16", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["share_harder"]["synth_pos"] == 1.0 and d["groups"]["real_pos"]["count"] == 32
