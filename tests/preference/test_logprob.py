import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lm_fixtures import tiny_llama  # noqa: E402

from pairlab.preference.logprob import sequence_logprob, sequence_logprob_from_logits  # noqa: E402


def test_from_logits_matches_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    total = sequence_logprob_from_logits(logits, ids, mask, "sum")
    mean = sequence_logprob_from_logits(logits, ids, mask, "mean")
    for b in range(2):
        ref = sum(torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item() for t in range(5) if mask[b, t])
        assert total[b].item() == pytest.approx(ref, abs=1e-12)
        assert mean[b].item() == pytest.approx(ref / int(mask[b].sum()), abs=1e-12)


def test_model_wrapper_padding_invariant_and_differentiable():
    model = tiny_llama()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    resp = torch.tensor([[0, 0, 0, 1, 1]])
    plain = sequence_logprob(model, ids, resp)
    padded = sequence_logprob(model, torch.tensor([[0, 0, 5, 6, 7, 8, 9]]), torch.tensor([[0, 0, 0, 0, 0, 1, 1]]),
                              attention_mask=torch.tensor([[0, 0, 1, 1, 1, 1, 1]]))
    assert padded.item() == pytest.approx(plain.item(), abs=1e-4)
    plain.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_errors():
    logits = torch.randn(1, 3, 4)
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="position 0"):
        sequence_logprob_from_logits(logits, ids, torch.tensor([[1, 0, 0]]))
    with pytest.raises(ValueError, match="no token"):
        sequence_logprob_from_logits(logits, ids, torch.tensor([[0, 0, 0]]))
    with pytest.raises(ValueError, match="reduce"):
        sequence_logprob_from_logits(logits, ids, torch.tensor([[0, 1, 1]]), "max")
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        sequence_logprob_from_logits(torch.randn(1, 2, 4), ids, torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match="response_mask must have the shape"):
        sequence_logprob_from_logits(logits, ids, torch.tensor([[0, 1]]))
