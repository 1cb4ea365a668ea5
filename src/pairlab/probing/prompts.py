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
