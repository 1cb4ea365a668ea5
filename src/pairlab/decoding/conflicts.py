"""A small, project-authored set of knowledge-conflict prompts for context-aware decoding (CAD / AdaCAD).

Each item is a question whose answer a small LM knows (capitals and a few common facts), a true answer, and a
counterfactual answer. :func:`conflict_prompts` builds three prompt lists: the question alone (parametric
knowledge), the question with a context stating the **counterfactual** fact (knowledge conflict: a decoder that
uses the context should answer the counterfactual), and the question with a context stating the **true** fact
(agreement: AdaCAD's weight should be ~0). Written for this repository; not from any benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ConflictItem:
    question: str
    true_answer: str
    counterfactual: str
    statement: str  # with one "{}" for the answer

    def context(self, answer: str) -> str:
        return self.statement.format(answer)


def _capital(country: str, capital: str, other: str) -> ConflictItem:
    return ConflictItem(f"What is the capital of {country}?", capital, other, f"The capital of {country} is {{}}.")


KNOWLEDGE_CONFLICTS: tuple[ConflictItem, ...] = (
    _capital("France", "Paris", "Rome"),
    _capital("Japan", "Tokyo", "Madrid"),
    _capital("Italy", "Rome", "Berlin"),
    _capital("Germany", "Berlin", "Lisbon"),
    _capital("Spain", "Madrid", "Vienna"),
    _capital("England", "London", "Oslo"),
    _capital("Russia", "Moscow", "Cairo"),
    _capital("China", "Beijing", "Athens"),
    _capital("Egypt", "Cairo", "Dublin"),
    _capital("Greece", "Athens", "Tokyo"),
    _capital("Portugal", "Lisbon", "Warsaw"),
    _capital("Austria", "Vienna", "Paris"),
    _capital("Ireland", "Dublin", "Moscow"),
    _capital("Norway", "Oslo", "Beijing"),
    _capital("Sweden", "Stockholm", "London"),
    _capital("Poland", "Warsaw", "Stockholm"),
    ConflictItem("Who wrote Romeo and Juliet?", "Shakespeare", "Dickens", "Romeo and Juliet was written by {}."),
    ConflictItem("How many legs does a spider have?", "8", "six", "A spider has {} legs."),
    ConflictItem("What is the largest planet in the solar system?", "Jupiter", "Mars",
                 "The largest planet in the solar system is {}."),
    ConflictItem("Which animal is known as the king of the jungle?", "lion", "zebra",
                 "The animal known as the king of the jungle is the {}."),
    ConflictItem("What is the boiling point of water in degrees Celsius?", "100", "70",
                 "Water boils at {} degrees Celsius."),
    ConflictItem("What is the largest ocean on Earth?", "Pacific", "Atlantic", "The largest ocean on Earth is the {}."),
    ConflictItem("Which planet is known as the Red Planet?", "Mars", "Venus",
                 "The planet known as the Red Planet is {}."),
    ConflictItem("What gas do plants absorb from the air?", "carbon dioxide", "helium",
                 "Plants absorb {} from the air."),
)


def conflict_prompts(
    items: tuple[ConflictItem, ...] = KNOWLEDGE_CONFLICTS,
    wrap: Callable[[str], str] | None = None,
) -> dict[str, list[str]]:
    """Prompts ``{"no_context", "counterfactual", "agree"}`` (one per item), each passed through ``wrap`` (e.g. a
    chat template: ``lambda p: tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
    add_generation_prompt=True)``)."""
    w = wrap or (lambda p: p)
    with_ctx = "Context: {c}\nQuestion: {q}\nAnswer in one sentence."
    return {
        "no_context": [w(f"Question: {it.question}\nAnswer in one sentence.") for it in items],
        "counterfactual": [w(with_ctx.format(c=it.context(it.counterfactual), q=it.question)) for it in items],
        "agree": [w(with_ctx.format(c=it.context(it.true_answer), q=it.question)) for it in items],
    }


def follows(answer: str, target: str) -> bool:
    """Whether a generated ``answer`` asserts ``target``: it contains it (case-insensitive) and has no "not"."""
    a = answer.lower()
    return target.lower() in a and " not " not in f" {a} " and "n't" not in a
