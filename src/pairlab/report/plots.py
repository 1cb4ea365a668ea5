"""PNG plots of a run: loss curve, positive/negative score histograms, 2-D projection of test embeddings.

matplotlib with the non-interactive Agg backend; the projection is PCA (sklearn) of the backbone features
of up to 3000 test images, coloured by class; unlabelled samples (label ``-1``, e.g. an unlabelled
``folder:`` data set) are drawn in one neutral colour (:data:`NEUTRAL`) under a title that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_loss(history: Sequence[float], path: Path) -> Path:
    """Per-step loss and a moving average."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    y = torch.tensor(list(history), dtype=torch.float64)
    ax.plot(y.numpy(), lw=0.6, alpha=0.4, label="step")
    w = max(1, len(y) // 50)
    if len(y) >= w > 1:
        smooth = torch.nn.functional.avg_pool1d(y[None, None], w, stride=1)[0, 0]
        ax.plot(range(w - 1, len(y)), smooth.numpy(), lw=1.5, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scores(pos: torch.Tensor, neg: torch.Tensor, path: Path) -> Path:
    """Histogram of positive vs negative cosine scores (density)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = torch.linspace(-1, 1, 61).numpy()
    ax.hist(neg.numpy(), bins=bins, density=True, alpha=0.6, label=f"negatives (mean {float(neg.mean()):.2f})")
    ax.hist(pos.numpy(), bins=bins, density=True, alpha=0.6, label=f"positives (mean {float(pos.mean()):.2f})")
    ax.set_xlabel("cosine similarity of projections")
    ax.set_ylabel("density")
    ax.set_title("positive vs negative scores (test views)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


NEUTRAL = "#7f7f7f"  # the colour of unlabelled points


def projection_figure(features: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]):
    """Matplotlib figure of the PCA to 2-D of (L2-normalised) ``features``, coloured by class.

    Samples with a negative label (unlabelled) are one grey scatter without a legend entry; when every
    sample is unlabelled the title says so (no class "0").
    """
    from sklearn.decomposition import PCA

    plt = _plt()
    f = torch.nn.functional.normalize(features.double(), dim=1).numpy()
    y = labels.numpy()
    xy = PCA(n_components=2, random_state=0).fit_transform(f)
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10")
    unlabelled = y < 0
    if unlabelled.any():
        ax.scatter(xy[unlabelled, 0], xy[unlabelled, 1], s=4, color=NEUTRAL)
    for c in range(int(y.max()) + 1 if len(y) else 0):
        m = y == c
        ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(c % 10), label=classes[c] if c < len(classes) else str(c))
    if len(y) and unlabelled.all():
        ax.set_title("test embeddings (backbone features, PCA), unlabelled data: one colour")
    else:
        ax.set_title("test embeddings (backbone features, PCA)")
        ax.legend(markerscale=3, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_projection(features: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], path: Path,
                    max_points: int = 3000) -> Path:
    """PCA to 2-D of (L2-normalised) features of the first ``max_points`` samples, coloured by class (PNG)."""
    fig = projection_figure(features[:max_points], labels[:max_points], classes)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def write_plots(run_dir: Path, history: Sequence[float], arrays: dict[str, torch.Tensor],
                classes: Sequence[str]) -> dict[str, str]:
    """Write the run's PNGs; returns ``{name: path}``."""
    run_dir = Path(run_dir)
    out = {}
    if len(history):
        out["loss"] = str(plot_loss(history, run_dir / "loss.png"))
    if "pos_scores" in arrays:
        out["scores"] = str(plot_scores(arrays["pos_scores"], arrays["neg_scores"], run_dir / "scores.png"))
    if "test_features" in arrays:
        out["projection"] = str(plot_projection(arrays["test_features"], arrays["test_labels"], classes,
                                                run_dir / "projection.png"))
    return out
