"""Every registered candidates / weights component trains in ``pairlab train`` (issue #4), registry-driven.

Each run: 2 steps on digits with NT-Xent, then checks that the loss is finite and that the component was used
(memory filled, extra columns / appended views seen by the objective, or a first-step loss different from plain
NT-Xent on the same seed). A component registered without an entry in ``USED`` or ``NOT_IN_LOOP`` fails.
"""

import json
import math

import pytest
import torch

from pairlab import registry
from pairlab.train.checkpoint import load_checkpoint
from pairlab.train.components import PairComponents, SetupContext, build_components
from pairlab.train.config import make_config
from pairlab.train.loop import train

B = 32

# components whose input kind cannot apply to the image loop, with the reason (and the message they fail with)
NOT_IN_LOOP = {
    ("candidates", "grouped"): "batch sampler",
    ("candidates", "supremix"): "regression targets",
    ("weights", "ipw-sampler"): "pair sampler",
}

# extra args some components need to do anything in the image loop
ARGS = {
    ("weights", "calibrated-margin"): {"m0": 0.1},  # no per-pair calibration on images: only the base margin acts
}


def _cfg(tmp_path, name, **over):
    base = {"name": name, "runs_dir": str(tmp_path), "dataset": "digits", "train_subset": 128, "batch_size": B,
            "epochs": 1, "max_steps": 2, "loggers": [], "temperature": 0.2,
            "model": {"widths": [4, 8], "hidden_dim": 16, "proj_dim": 8}}
    return make_config({**base, **over})


def _run(tmp_path, name, **over):
    cfg = _cfg(tmp_path, name, **over)
    train(cfg, quiet=True, evaluate_at_end=False)
    run = tmp_path / name
    state = load_checkpoint(run / "checkpoint.pt")
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    return state, row


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    state, _ = _run(tmp_path_factory.mktemp("base"), "ntxent")
    return state


def _differs(base, hist, i=0):
    return abs(hist[i] - base["history"][i]) > 1e-6


def _sd(state, prefix):
    return {k[len(prefix):]: v for k, v in state["components"].items() if k.startswith(prefix)}


# name -> check(state, last metrics row, baseline history): the component was actually used
USED = {
    ("candidates", "queue"): lambda s, r, b: int(_sd(s, "gen.queue.")["ptr"]) == 2 * B and r["cand_extra"] > 0,
    ("candidates", "mochi"): lambda s, r, b: r["cand_extra"] > 0 and _differs(b, s["history"]),
    ("candidates", "ft"): lambda s, r, b: r["cand_views"] == 2 and _differs(b, s["history"]),
    ("candidates", "interclr"): lambda s, r, b: (tuple(_sd(s, "gen.")["bank"].shape) == (128, 8)
                                                 and r["cand_views"] == 3 and r["cand_extra"] > 0),
    ("candidates", "claps"): lambda s, r, b: (tuple(_sd(s, "gen.head.")["centroids"].shape) == (10, 8)
                                              and r["cand_views"] == 3 and r["cand_extra"] == B),
    ("candidates", "neighbours"): lambda s, r, b: (tuple(_sd(s, "gen.")["index"].shape) == (128, 8)
                                                   and r["cand_views"] == 3),
    ("candidates", "xbm"): lambda s, r, b: (int(_sd(s, "gen.memory.")["count"]) == 2 * 2 * B
                                            and r["cand_extra"] == 2 * B and _differs(b, s["history"], 1)),
    ("weights", "hardness"): lambda s, r, b: _differs(b, s["history"]),
    ("weights", "meow"): lambda s, r, b: _differs(b, s["history"]),
    ("weights", "adameow"): lambda s, r, b: _differs(b, s["history"]) and _opt_params(s) == _opt_params(b) + 4,
    ("weights", "inverse-propensity"): lambda s, r, b: _differs(b, s["history"]),
    ("weights", "calibrated-margin"): lambda s, r, b: _differs(b, s["history"]),
    ("weights", "positive-margin"): lambda s, r, b: _differs(b, s["history"]),
    # before warm-up every anchor weight is 1: the loss equals NT-Xent's, and the memory holds both batches' losses
    ("weights", "dbpm"): lambda s, r, b: (abs(s["history"][0] - b["history"][0]) < 1e-5
                                          and r["anchor_weight_mean"] == 1.0
                                          and int(torch.isfinite(_sd(s, "weights.")["memory"][:, 0]).sum()) == 2 * B),
}


def _opt_params(state):
    return sum(len(g["params"]) for g in state["optimizer"]["param_groups"])


ALL = [(k, n) for k in ("candidates", "weights") for n in registry.available(k)]


def test_every_registered_component_is_covered():
    """A newly registered component must get loop support (and a check in USED) or a reason in NOT_IN_LOOP."""
    missing = [kn for kn in ALL if kn not in USED and kn not in NOT_IN_LOOP]
    assert not missing, f"register loop support and a USED check for {missing} (tests/train/test_components.py)"


@pytest.mark.parametrize("kind,name", [kn for kn in ALL if kn in USED], ids=lambda x: str(x))
def test_component_trains_and_is_used(tmp_path, baseline, kind, name):
    over = {kind: name}
    if (kind, name) in ARGS:
        over[f"{kind}_args"] = ARGS[(kind, name)]
    state, row = _run(tmp_path, name, **over)
    assert len(state["history"]) == 2 and all(math.isfinite(v) for v in state["history"])
    assert USED[(kind, name)](state, row, baseline), (name, row, state["history"], baseline["history"])


@pytest.mark.parametrize("kind,name", sorted(NOT_IN_LOOP), ids=lambda x: str(x))
def test_components_outside_the_loop_fail_with_how_to(tmp_path, kind, name):
    with pytest.raises(ValueError, match=f"{NOT_IN_LOOP[(kind, name)]}.*pairlab train cannot use it"):
        train(_cfg(tmp_path, name, **{kind: name}), quiet=True, evaluate_at_end=False)


def test_resume_restores_component_state(tmp_path):
    """The XBM memory is checkpointed: a run stopped after 1 step and resumed equals the uninterrupted run."""
    full, _ = _run(tmp_path, "full", candidates="xbm", deterministic=True)
    cfg = _cfg(tmp_path, "part", candidates="xbm", deterministic=True, checkpoint_every=1)
    train(cfg, quiet=True, evaluate_at_end=False, _stop_after_steps=1)
    train(cfg, resume=True, quiet=True, evaluate_at_end=False)
    part = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert part["history"] == pytest.approx(full["history"], abs=1e-6)
    assert torch.equal(part["components"]["gen.memory.keys"], full["components"]["gen.memory.keys"])


def test_setup_context_encodes_without_touching_the_model():
    """encode_dataset = the model's eval-mode forward of the un-augmented inputs; train mode is restored."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    x = torch.rand(10, 1, 2, 2)
    ctx = SetupContext(model, x, None, 10, 3)
    z = ctx.encode_dataset()
    model.eval()
    assert torch.allclose(z, model(x), atol=1e-6)
    model.train()
    ctx.encode_dataset()
    assert model.training and torch.equal(ctx.raw_features(), x.flatten(1))


def test_inverse_propensity_covariate_from_pixels():
    """prepare() builds cov[i, j] = cos(pixels of sample(i), pixels of sample(j)) per view, extra = the mean."""
    gen, w = build_components(None, {}, "inverse-propensity", {}, {})
    x = torch.rand(6, 1, 3, 3)
    comps = PairComponents(gen, w)
    comps.setup(SetupContext(torch.nn.Identity(), x, None, 6, 4))
    ids = torch.tensor([4, 1, 3])
    w.prepare(torch.randn(3, 2, 4), torch.randn(5, 4), None, ids=ids)
    p = x.flatten(1)[ids]
    ref = torch.nn.functional.cosine_similarity(p[:, None], p[None, :], dim=-1)
    ref = ref.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert w.covariate.shape == (6, 11)
    assert torch.allclose(w.covariate[:, :6], ref, atol=1e-5)
    assert torch.allclose(w.covariate[:, 6:], torch.full((6, 5), float(ref.mean())), atol=1e-5)
