import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lm_fixtures import CharTokenizer, smollm2, tiny_llama  # noqa: E402, F401

from pairlab.decoding import ContrastiveLogitsProcessor, LogitFusion, contrastive_generate, fuse_logits  # noqa: E402


def manual_loop(model, main, mm, aux, am, fusion, steps):
    """Reference: full forward passes of both branches at every step, fusion as a plain function."""
    ids, mask, a_ids, a_mask = main.clone(), mm.clone(), aux.clone(), am.clone()
    alphas = []
    for _ in range(steps):
        with torch.no_grad():
            z = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).logits
            za = model(input_ids=a_ids, attention_mask=a_mask,
                       position_ids=(a_mask.cumsum(-1) - 1).clamp_min(0)).logits
        r = fuse_logits(z[:, -1], za[:, -1], fusion.alpha, fusion.mode, fusion.floor, fusion.beta)
        nt = r.logits.argmax(-1, keepdim=True)
        alphas.append(r.alpha)
        ids, a_ids = torch.cat([ids, nt], 1), torch.cat([a_ids, nt], 1)
        mask, a_mask = torch.cat([mask, torch.ones_like(nt)], 1), torch.cat([a_mask, torch.ones_like(nt)], 1)
    return ids[:, main.shape[1] :], torch.stack(alphas, 1)


@pytest.mark.parametrize(
    "use_cache, fusion",
    [(True, LogitFusion.adacad()), (False, LogitFusion.adacad()), (True, LogitFusion.cad(1.0)),
     (True, LogitFusion.ritual())],
)
def test_generate_with_processor_equals_manual_loop(use_cache, fusion):
    from transformers import LogitsProcessorList

    model = tiny_llama()
    main = torch.tensor([[0, 0, 5, 6, 7, 8], [3, 4, 5, 6, 7, 8]])
    aux = torch.tensor([[0, 9, 8], [10, 11, 12]])
    mm, am = (main != 0).long(), (aux != 0).long()
    proc = ContrastiveLogitsProcessor(model, aux, am, fusion, use_cache=use_cache)
    out = model.generate(input_ids=main, attention_mask=mm, logits_processor=LogitsProcessorList([proc]),
                         do_sample=False, max_new_tokens=4, pad_token_id=0, eos_token_id=None)
    ref_tokens, ref_alpha = manual_loop(model, main, mm, aux, am, fusion, 4)
    assert torch.equal(out[:, main.shape[1] :], ref_tokens)
    assert torch.allclose(torch.stack(proc.alphas, 1), ref_alpha, atol=1e-5)


def test_identical_branches_give_zero_weight_and_plain_greedy():
    model, tok = tiny_llama(), CharTokenizer("left")
    prompts = ["abc", "hello there"]
    plain, _ = contrastive_generate(model, tok, prompts, None, max_new_tokens=5, eos_token_id=None)
    fused, w = contrastive_generate(model, tok, prompts, prompts, LogitFusion.adacad(), max_new_tokens=5,
                                    eos_token_id=None)
    assert fused == plain
    assert all(float(x.abs().max()) < 1e-6 for x in w)


def test_errors():
    model = tiny_llama()
    with pytest.raises(ValueError, match="aux_input_ids"):
        ContrastiveLogitsProcessor(model, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="aux_attention_mask"):
        ContrastiveLogitsProcessor(model, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
    proc = ContrastiveLogitsProcessor(model, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="beam search"):
        proc(torch.ones(4, 5, dtype=torch.long), torch.randn(4, 64))
    with pytest.raises(ValueError, match="one entry per prompt"):
        contrastive_generate(model, CharTokenizer(), ["a", "b"], ["a"])


@pytest.mark.slow
def test_adacad_on_smollm2_follows_context(smollm2):  # noqa: F811
    """Real model, 8 knowledge-conflict prompts: AdaCAD follows the counterfactual context at least as often as
    greedy decoding, and its weight is smaller when the context agrees with the model than when it conflicts."""
    from pairlab.decoding.conflicts import KNOWLEDGE_CONFLICTS, conflict_prompts, follows

    model, tok = smollm2

    def chat(p):
        return tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)

    items = KNOWLEDGE_CONFLICTS[:8]
    pr = conflict_prompts(items, wrap=chat)
    greedy, _ = contrastive_generate(model, tok, pr["counterfactual"], None, max_new_tokens=10)
    ada, w_conf = contrastive_generate(model, tok, pr["counterfactual"], pr["no_context"], max_new_tokens=10)
    _, w_agree = contrastive_generate(model, tok, pr["agree"], pr["no_context"], max_new_tokens=10)
    n_greedy = sum(follows(g, it.counterfactual) for g, it in zip(greedy, items, strict=True))
    n_ada = sum(follows(a, it.counterfactual) for a, it in zip(ada, items, strict=True))
    assert n_ada >= n_greedy and n_ada >= 4
    mean_conf = sum(float(w.mean()) for w in w_conf) / len(items)
    mean_agree = sum(float(w.mean()) for w in w_agree) / len(items)
    assert mean_agree < mean_conf
    assert all(float(w.max()) <= 0.6932 for w in w_conf)
