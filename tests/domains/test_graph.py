"""Graph domain: the ML-100k heterogeneous graph vs the raw files, meta-path counts / PathSim / GCN normalisation vs
brute force, label construction without leakage, probe metrics vs sklearn, and tiny runs on a toy graph."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pairlab.domains import graph as gr


def write_toy(root: Path, users: int = 24, movies: int = 24, seed: int = 0) -> Path:
    """Two genres; odd users rate mostly Drama movies, even users mostly Comedy ones; two occupations."""
    g = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    half = movies // 2
    with open(root / "ml-100k.item", "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for i in range(1, movies + 1):
            f.write(f"{i}\tMovie {i}\t1995\t{'Drama' if i <= half else 'Comedy'}{' War' if i == movies else ''}\n")
    with open(root / "ml-100k.inter", "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u in range(1, users + 1):
            lo = 1 if u % 2 else half + 1
            own = (torch.randperm(half, generator=g)[:6] + lo).tolist()
            other = (torch.randperm(half, generator=g)[:1] + (half + 1 if lo == 1 else 1)).tolist()
            for t, i in enumerate(own + other):
                f.write(f"{u}\t{i}\t{1 + (i + u) % 5}\t{100 + t}\n")
    with open(root / "ml-100k.user", "w") as f:
        f.write("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n")
        for u in range(1, users + 1):
            f.write(f"{u}\t30\tF\t{'artist' if u % 2 else 'doctor'}\t00000\n")
    return root


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    return write_toy(tmp_path / "ml")


def test_real_graph_sizes():
    g = gr.load_ml100k_hetero()
    assert g.num_nodes == {"user": 943, "movie": 1682, "genre": 19, "occupation": 21}
    assert {k: v[2].shape[1] for k, v in g.edges.items()} == {"rates": 100000, "has_genre": 2893, "works_as": 943}
    r = g.rating_matrix()
    assert int((r > 0).sum()) == 100000 and float(r.max()) == 5.0
    nodes, labels, classes = gr.node_labels(g, "movie-genre", 30)
    assert classes == ("Action", "Comedy", "Documentary", "Drama", "Horror", "Thriller") and nodes.numel() == 742
    assert int(torch.bincount(labels).max()) == 376


def test_labels_are_single_genre_and_adjacency_transposes(toy: Path):
    g = gr.load_ml100k_hetero(toy)
    nodes, labels, classes = gr.node_labels(g, "movie-genre", 5)
    assert classes == ("Comedy", "Drama")
    assert 23 not in nodes.tolist()  # the last movie has two genres
    mg = g.adjacency("movie", "genre")
    assert torch.equal(g.adjacency("genre", "movie"), mg.T)
    for n, y in zip(nodes.tolist(), labels.tolist(), strict=True):
        assert int(mg[n].sum()) == 1 and g.names["genre"][int(mg[n].argmax())] == classes[y]
    with pytest.raises(ValueError, match="no edge type"):
        g.adjacency("movie", "genre", drop=("has_genre",))
    with pytest.raises(ValueError, match="classes"):
        gr.node_labels(g, "movie-genre", 50)


def test_metapath_counts_and_pathsim_match_brute_force(toy: Path):
    g = gr.load_ml100k_hetero(toy)
    types = gr.parse_metapath("MUOUM", "movie", "has_genre")
    c = gr.metapath_counts(g, types, ("has_genre",))
    mu, uo = g.adjacency("movie", "user"), g.adjacency("user", "occupation")
    n_m, n_u, n_o = mu.shape[0], mu.shape[1], uo.shape[1]
    for i in (0, 5, 17):
        for j in (0, 3, 20):
            ref = sum(mu[i, a] * uo[a, o] * uo[b, o] * mu[j, b] for a in range(n_u) for o in range(n_o)
                      for b in range(n_u))
            assert float(c[i, j]) == pytest.approx(float(ref))
    e = gr.pathsim_topk(c, 3)
    a = torch.zeros(n_m, n_m)
    a[e[0], e[1]] = 1
    assert torch.equal(a, a.T) and float(a.diagonal().sum()) == 0
    sim = 2 * c / (c.diagonal()[:, None] + c.diagonal()[None, :])
    sim.fill_diagonal_(-1)
    for i in range(n_m):  # each node's best neighbour is kept
        assert a[i, int(sim[i].argmax())] == 1


def test_metapath_validation():
    with pytest.raises(ValueError, match="leak"):
        gr.parse_metapath("MGM", "movie", "has_genre")
    with pytest.raises(ValueError, match="start and end"):
        gr.parse_metapath("UMU", "movie", "has_genre")
    with pytest.raises(ValueError, match="no edge type"):
        gr.parse_metapath("MOM", "movie", "has_genre")
    with pytest.raises(ValueError, match="unknown key"):
        gr.make_config({"epochz": 1})
    with pytest.raises(ValueError, match="leak"):
        gr.make_config({"metapaths": ["MUM", "MGM"]})


def test_gcn_adjacency_matches_dense_formula():
    e = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    a = gr.gcn_adjacency(e, 5).to_dense()
    dense = torch.zeros(5, 5)
    dense[e[0], e[1]] = 1
    dense += torch.eye(5)
    d = dense.sum(1).rsqrt()
    torch.testing.assert_close(a, d[:, None] * dense * d[None, :])
    dropped = gr.gcn_adjacency(e, 5, drop=0.99, generator=torch.Generator().manual_seed(0)).to_dense()
    torch.testing.assert_close(dropped.diagonal(), torch.ones(5))


def test_split_and_macro_f1():
    from sklearn.metrics import f1_score

    labels = torch.tensor([0] * 10 + [1] * 6 + [2] * 4)
    tr, te = gr.stratified_split(labels, 0.5, 0)
    assert set(tr.tolist()).isdisjoint(te.tolist()) and len(tr) + len(te) == 20
    assert torch.bincount(labels[tr]).tolist() == [5, 3, 2]
    g = torch.Generator().manual_seed(0)
    y, p = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (50,), generator=g)
    assert gr.macro_f1(p, y) == pytest.approx(f1_score(y.numpy(), p.numpy(), average="macro"))


def test_semantic_attention_is_a_convex_combination():
    torch.manual_seed(0)
    att = gr.SemanticAttention(4)
    zs = [torch.randn(6, 4) for _ in range(3)]
    out = att(zs)
    beta = att.last_beta
    assert float(beta.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(out, sum(b * z for b, z in zip(beta, zs, strict=True)))


@pytest.mark.parametrize("method", ["meow", "metapath-infonce", "gcn"])
def test_tiny_run_writes_artefacts(toy: Path, tmp_path: Path, method: str):
    cfg = gr.make_config({"name": f"g-{method}", "method": method, "data_dir": str(toy), "runs_dir": str(tmp_path),
                          "epochs": 3, "hidden": 8, "topk": 3, "num_clusters": [2, 4], "min_class_count": 5,
                          "train_frac": 0.5})
    m = gr.train(cfg, quiet=True)
    run = Path(m["run_dir"])
    for f in ("config.yaml", "metrics.jsonl", "metrics.json", "loss.png", "projection.png"):
        assert (run / f).is_file(), f
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert m["labelled"] == 23 and 0 <= m["linear_acc"] <= 1
    assert set(m["leaderboard_baselines"]) <= set(m["leaderboard"]) and f"g-{method}" in m["leaderboard"]


def test_meow_weights_drop_coclustered_negatives(toy: Path):
    """With one granularity, W is 0 exactly on same-cluster pairs, so the loss equals a masked InfoNCE."""
    from pairlab.nce import nce
    from pairlab.weights.meow import cluster_consensus_weights

    assign = torch.tensor([[0, 0, 1, 1, 2]])
    w = cluster_consensus_weights(assign)
    scores = torch.randn(5, 5, dtype=torch.float64)
    got = nce(scores, torch.eye(5, dtype=torch.bool), weights=w.double()).per_anchor
    for i in range(5):
        others = [j for j in range(5) if assign[0, j] != assign[0, i]]
        ref = -scores[i, i] + torch.logsumexp(scores[i, others], 0)
        assert float(got[i]) == pytest.approx(float(ref))
