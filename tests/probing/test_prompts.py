import importlib.util

import pytest

from pairlab.probing.prompts import (
    contrast_pairs,
    load_pang_lee_polarity,
    negated_polarity_prompts,
    polarity_contrast_prompts,
)


def test_contrast_pairs_differ_only_in_answer():
    pos, neg = contrast_pairs(["The sky is blue.", "Fish fly."], ("Yes.", "No."))
    assert pos == ["The sky is blue. Yes.", "Fish fly. Yes."]
    assert neg == ["The sky is blue. No.", "Fish fly. No."]
    p, n = polarity_contrast_prompts(["great film"])
    assert p[0].endswith("Answer: positive") and n[0].endswith("Answer: negative")
    assert p[0][: -len(" positive")] == n[0][: -len(" negative")]


def test_negated_prompts():
    d = negated_polarity_prompts(["dull"])
    assert d["A_yes"][0].endswith("Is this review positive?\nAnswer: Yes")
    assert d["N_no"][0].endswith("Is this review not positive?\nAnswer: No")


def test_errors():
    with pytest.raises(TypeError, match="single str"):
        contrast_pairs("abc")
    with pytest.raises(ValueError, match="different"):
        contrast_pairs(["a"], ("Yes", "Yes"))
    with pytest.raises(ValueError, match="template"):
        contrast_pairs(["a"], template="{statement}")


def test_pang_lee_file():
    if importlib.util.find_spec("gensim") is None:
        pytest.skip("gensim ships the Pang & Lee sentences (pairlab[data])")
    sents, labels = load_pang_lee_polarity()
    assert len(sents) == 200 and sum(labels) == 100
    assert all(isinstance(s, str) and s for s in sents)
