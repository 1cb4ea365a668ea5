from pairlab.decoding.conflicts import KNOWLEDGE_CONFLICTS, conflict_prompts, follows


def test_prompts_state_the_right_facts():
    pr = conflict_prompts(KNOWLEDGE_CONFLICTS[:3])
    assert set(pr) == {"no_context", "counterfactual", "agree"} and all(len(v) == 3 for v in pr.values())
    item = KNOWLEDGE_CONFLICTS[0]
    assert item.counterfactual in pr["counterfactual"][0] and item.true_answer not in pr["counterfactual"][0]
    assert item.true_answer in pr["agree"][0]
    assert "Context" not in pr["no_context"][0] and item.question in pr["no_context"][0]
    wrapped = conflict_prompts(KNOWLEDGE_CONFLICTS[:1], wrap=lambda p: f"<u>{p}</u>")
    assert wrapped["agree"][0].startswith("<u>") and wrapped["agree"][0].endswith("</u>")
    assert all(it.true_answer != it.counterfactual for it in KNOWLEDGE_CONFLICTS)


def test_follows_rule():
    assert follows("The capital of France is Rome.", "Rome")
    assert not follows("The capital of Italy is not Berlin.", "Berlin")
    assert not follows("It isn't Rome.", "rome")
    assert not follows("Paris.", "Rome")
