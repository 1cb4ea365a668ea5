"""Text domain: loaders, correlation/retrieval/CV metrics vs references, samplers, config; MiniLM path (slow)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from pairlab.domains import text as tx

needs_gensim = pytest.mark.skipif(importlib.util.find_spec("gensim") is None, reason="gensim not installed")


@needs_gensim
def test_lee_matrix_symmetric_with_1225_pairs():
    lee = tx.load_lee()
    assert len(lee.docs) == 50 and torch.equal(lee.sim, lee.sim.T)
    idx, human = lee.pairs()
    assert idx.shape == (1225, 2) and bool((idx[:, 0] < idx[:, 1]).all())
    assert float(human.min()) >= 0 and float(human.max()) <= 1


@needs_gensim
def test_word_and_sentence_sets():
    ws, s1 = tx.load_wordsim353()
    sl, s2 = tx.load_simlex999()
    assert len(ws) == 353 == s1.numel() and len(sl) == 999 == s2.numel()
    assert ws[0] == ("love", "sex") and s1[0] == pytest.approx(6.77)
    texts, labels = tx.load_pang_lee()
    assert len(texts) == 200 and int(labels.sum()) == 100
    sents = tx.load_lee_background()
    assert len(sents) > 1000 and all(5 <= len(s.split()) <= 60 for s in sents)


@pytest.mark.skipif(importlib.util.find_spec("chatterbot_corpus") is None, reason="chatterbot-corpus not installed")
def test_chatterbot_qa_groups_duplicate_questions():
    qa = tx.load_chatterbot_qa()
    assert len(qa.questions) == len(qa.relevant) == 749 and len(qa.answers) == 871
    assert len(set(qa.questions)) == len(qa.questions)
    assert sum(len(r) for r in qa.relevant) >= 871 and all(r for r in qa.relevant)


def test_spearman_pearson_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (40,), generator=g).double()  # ties
    y = x + torch.randn(40, generator=g, dtype=torch.float64)
    assert tx.spearman(x, y) == pytest.approx(stats.spearmanr(x.numpy(), y.numpy()).statistic, abs=1e-12)
    assert tx.pearson(x, y) == pytest.approx(stats.pearsonr(x.numpy(), y.numpy()).statistic, abs=1e-12)


def test_retrieval_scores_match_loop():
    g = torch.Generator().manual_seed(1)
    q, a = torch.randn(12, 5, generator=g), torch.randn(20, 5, generator=g)
    rel = [sorted(torch.randperm(20, generator=g)[: 1 + i % 3].tolist()) for i in range(12)]
    qn, an = torch.nn.functional.normalize(q.double(), dim=1), torch.nn.functional.normalize(a.double(), dim=1)
    ranks = []
    for i in range(12):
        s = [float(qn[i] @ an[j]) for j in range(20)]
        order = sorted(range(20), key=lambda j: -s[j])
        ranks.append(1 + min(order.index(j) for j in rel[i]))
    m = tx.retrieval_scores(q, a, rel)
    for k in (1, 5, 10):
        assert m[f"recall@{k}"] == pytest.approx(sum(r <= k for r in ranks) / 12)
    assert m["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 12)


def test_cv_linear_accuracy_separable_and_chance():
    g = torch.Generator().manual_seed(2)
    y = torch.arange(60) % 2
    x = torch.randn(60, 4, generator=g) + 6.0 * y[:, None]
    assert tx.cv_linear_accuracy(x, y, 5, 0) == pytest.approx(1.0)
    noise = torch.randn(60, 4, generator=g)
    assert tx.cv_linear_accuracy(noise, y, 5, 0) < 0.8


def test_inverse_propensity_batches_flatten_lengths():
    sents = ["w " * 5] * 90 + ["w " * 40] * 10  # 90 short, 10 long
    uni = tx.make_config({"domain": "text", "steps": 20, "batch_size": 20})
    ipw = tx.make_config({"domain": "text", "steps": 20, "batch_size": 20, "sampler": "inverse-propensity"})
    frac = []
    for cfg in (uni, ipw):
        b = tx.batches(sents, cfg)
        assert len(b) == 20 and all(len(x) == 20 for x in b)
        flat = [i for x in b for i in x]
        frac.append(sum(i >= 90 for i in flat) / len(flat))
    assert frac[0] == pytest.approx(0.1, abs=0.02)  # uniform: each sentence equally often
    assert frac[1] == pytest.approx(0.5, abs=0.08)  # inverse propensity: both length bins equally often


def test_config_errors():
    with pytest.raises(ValueError, match="unknown key 'step'"):
        tx.make_config({"domain": "text", "step": 3})
    with pytest.raises(ValueError, match="sampler"):
        tx.make_config({"domain": "text", "sampler": "ipw"})
    with pytest.raises(ValueError, match="train_layers"):
        tx.make_config({"domain": "text", "steps": 5, "train_layers": 0})


@pytest.mark.slow
def test_minilm_split_forward_equals_full_model_and_trains_top_layers_only():
    enc = tx.MiniLMEncoder(train_layers=2)
    texts = ["A man is playing a guitar.", "A person plays an instrument.", "stock market", "hi"]
    e = enc.embed(texts, 32)
    enc.bert.eval()
    tok = enc.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = enc.bert(**tok).last_hidden_state
    ref = (h * tok["attention_mask"][..., None]).sum(1) / tok["attention_mask"].sum(1, keepdim=True)
    assert torch.allclose(e, ref, atol=1e-4)
    n = torch.nn.functional.normalize(e, dim=1)
    assert float(n[0] @ n[1]) == pytest.approx(0.666, abs=0.01)  # value measured with sentence-transformers
    enc.train()
    z1, z2 = enc(texts, 32), enc(texts, 32)
    assert not torch.allclose(z1, z2)  # dropout views differ
    (z1 - z2).square().sum().backward()
    assert enc.bert.encoder.layer[5].output.dense.weight.grad is not None
    assert enc.bert.encoder.layer[3].output.dense.weight.grad is None
    assert enc.bert.embeddings.word_embeddings.weight.grad is None
