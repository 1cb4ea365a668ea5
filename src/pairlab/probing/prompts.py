"""Contrast-pair prompt construction for CCS-style probing (Burns et al. 2023, ``generate.py``).

A binary question ``q`` becomes two inputs that differ only in the answer: ``x+ = q ⊕ a+``, ``x- = q ⊕ a-``.
The template is explicit so that the probed token position (last token for decoders) is the answer's.
"""

from __future__ import annotations

from collections.abc import Sequence


def contrast_pairs(
    statements: Sequence[str],
    answers: tuple[str, str] = ("Yes.", "No."),
    template: str = "{statement} {answer}",
) -> tuple[list[str], list[str]]:
    """Build ``(x+, x-)`` lists from ``statements`` with ``template`` (fields ``{statement}`` and ``{answer}``).

    Examples:
        >>> contrast_pairs(["Paris is in France."])
        (['Paris is in France. Yes.'], ['Paris is in France. No.'])
    """
    if isinstance(statements, str):
        raise TypeError("statements must be a sequence of strings, got a single str")
    if len(answers) != 2 or answers[0] == answers[1]:
        raise ValueError(f"answers must be two different strings, got {answers!r}")
    if "{statement}" not in template or "{answer}" not in template:
        raise ValueError(f"template must contain {{statement}} and {{answer}}, got {template!r}")
    pos = [template.format(statement=s, answer=answers[0]) for s in statements]
    neg = [template.format(statement=s, answer=answers[1]) for s in statements]
    return pos, neg


def load_pang_lee_polarity() -> tuple[list[str], list[int]]:
    """The 200 Pang & Lee sentence-polarity sentences shipped in gensim's test data (100 positive, 100 negative).

    Returns ``(sentences, labels)`` with label 1 = positive. The file is located without importing gensim.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gensim")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("gensim is not installed (pip install 'pairlab[data]'); it ships pang_lee_polarity.cor")
    path = Path(spec.origin).parent / "test" / "test_data" / "pang_lee_polarity.cor"
    sentences, labels = [], []
    for line in path.read_text(encoding="latin1").splitlines():
        if not line.strip():
            continue
        tag, text = line.split(" ", 1)
        if tag not in ("__label__pos", "__label__neg"):
            raise ValueError(f"unexpected label {tag!r} in {path}")
        sentences.append(text.strip())
        labels.append(int(tag == "__label__pos"))
    return sentences, labels


POLARITY_TEMPLATE = "Review: {statement}\nIs the sentiment of this review positive or negative?\nAnswer:{answer}"


def polarity_contrast_prompts(sentences: Sequence[str]) -> tuple[list[str], list[str]]:
    """Burns-style contrast pair per review: ``x+`` ends in " positive", ``x-`` in " negative"."""
    return contrast_pairs(sentences, (" positive", " negative"), POLARITY_TEMPLATE)


NEGATION_TEMPLATES = (
    "Review: {statement}\nQuestion: Is this review positive?\nAnswer:{answer}",
    "Review: {statement}\nQuestion: Is this review not positive?\nAnswer:{answer}",
)


def negated_polarity_prompts(sentences: Sequence[str]) -> dict[str, list[str]]:
    """PA-CCS-style statement ``A`` ("Is this review positive?") and its negation ``¬A`` ("... not positive?"),
    each with the answers " Yes" / " No": keys ``A_yes, A_no, N_yes, N_no``."""
    a_yes, a_no = contrast_pairs(sentences, (" Yes", " No"), NEGATION_TEMPLATES[0])
    n_yes, n_no = contrast_pairs(sentences, (" Yes", " No"), NEGATION_TEMPLATES[1])
    return {"A_yes": a_yes, "A_no": a_no, "N_yes": n_yes, "N_no": n_no}
