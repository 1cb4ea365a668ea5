"""Hardness report: how hard are a candidate generator's candidates compared with the in-batch ones?

For embeddings ``z [B, K, D]`` (optionally ``labels [B]``) and a generator (``pairlab.candidates``), every view
is an anchor and its scores ``sim(anchor, x)`` (cosine by default, or dot) are grouped into:

- ``real_pos``: the anchor's other views; ``real_neg``: the views of the other samples (in-batch);
- ``synth_neg``: the generator's ``extra`` columns the anchor may see (``Candidates.mask``), minus the ones
  marked in ``Candidates.positives``; extra rows coming straight from a queue count as synthetic too;
- ``synth_pos``: pairs of ``Candidates.views`` of the same sample in which at least one view is new
  (appended) or changed (replaced), plus the ``Candidates.positives`` columns.

Reported per group: the score distribution (count, mean, std, quantiles) and, per anchor,

- ``share_harder``: for synthetic negatives, the share scoring *above* the anchor's hardest (highest) real
  negative; for synthetic positives, the share scoring *below* its hardest (lowest) real positive;
- ``false_negative_rate`` (labels given): the share of negatives with the anchor's label, for real negatives
  (batch labels) and synthetic ones (``oracle_labels``, else ``extra_labels``).

Python: :func:`hardness_report` (returns :class:`HardnessReport`, ``.to_dict()``, ``.format()``) and
:func:`plot_hardness` (histograms, PNG). CLI: ``pairlab hardness mochi --set num_mix=16 --plot h.png``
runs a registered generator on synthetic clustered embeddings (or ``--embeddings file.pt`` holding
``{"z": [B, K, D], "labels": [B]}``) and prints the table (``--json`` for JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pairlab._validate import check_choice
from pairlab.candidates.base import Candidates, check_views
from pairlab.scores import prepare

GROUPS = ("real_pos", "real_neg", "synth_pos", "synth_neg")


def _summary(x: torch.Tensor) -> dict[str, float]:
    if x.numel() == 0:
        return {"count": 0.0}
    x = x.double()
    q = torch.quantile(x, torch.tensor([0.1, 0.5, 0.9], dtype=x.dtype))
    return {"count": float(x.numel()), "mean": float(x.mean()), "std": float(x.std()) if x.numel() > 1 else 0.0,
            "q10": float(q[0]), "median": float(q[1]), "q90": float(q[2]), "min": float(x.min()),
            "max": float(x.max())}


@dataclass
class HardnessReport:
    """Scores per group (flat tensors) and the summary figures (see the module docstring)."""

    scores: dict[str, torch.Tensor]
    share_harder: dict[str, float] = field(default_factory=dict)
    false_negative_rate: dict[str, float] = field(default_factory=dict)
    similarity: str = "cosine"

    def to_dict(self) -> dict[str, Any]:
        return {
            "similarity": self.similarity,
            "groups": {g: _summary(self.scores[g]) for g in GROUPS},
            "share_harder": dict(self.share_harder),
            "false_negative_rate": dict(self.false_negative_rate),
        }

    def format(self) -> str:
        d = self.to_dict()
        lines = [f"{'group':<10} {'count':>8} {'mean':>8} {'q10':>8} {'median':>8} {'q90':>8}"]
        for g in GROUPS:
            s = d["groups"][g]
            if s["count"] == 0:
                lines.append(f"{g:<10} {0:>8}")
                continue
            lines.append(f"{g:<10} {int(s['count']):>8} {s['mean']:>8.4f} {s['q10']:>8.4f} {s['median']:>8.4f} "
                         f"{s['q90']:>8.4f}")
        for k, v in d["share_harder"].items():
            lines.append(f"share of {k} harder than the hardest real one: {v:.4f}")
        for k, v in d["false_negative_rate"].items():
            lines.append(f"false-negative rate ({k}): {v:.4f}")
        return "\n".join(lines)


def _z_rows(x: torch.Tensor, c: Candidates, b: int, k: int) -> torch.Tensor:
    """Rows of a ``[B*K', M]`` candidates matrix that belong to the original views of ``z`` (``[B*K, M]``)."""
    kv = k if c.views is None else c.views.shape[1]
    return x.view(b, kv, -1)[:, :k].reshape(b * k, -1).to(x.device)


def report_from_candidates(
    z: torch.Tensor, c: Candidates, labels: torch.Tensor | None = None, similarity: str = "cosine"
) -> HardnessReport:
    """The report for candidates ``c`` already generated from ``z`` (see :func:`hardness_report`)."""
    check_choice("similarity", similarity, ("cosine", "dot"))
    z, labels = check_views(z, labels)
    c.validate(z)
    b, k, d = z.shape
    n = b * k
    with torch.no_grad():
        a = prepare(z.detach().reshape(n, d), similarity)
        sample = torch.arange(b, device=z.device).repeat_interleave(k)
        same = sample[:, None] == sample[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        s = a @ a.T
        pos_m, neg_m = same & ~eye, ~same
        out: dict[str, torch.Tensor] = {"real_pos": s[pos_m], "real_neg": s[neg_m]}
        hardest_neg = s.masked_fill(~neg_m, float("-inf")).max(dim=1).values  # [n]
        hardest_pos = s.masked_fill(~pos_m, float("inf")).min(dim=1).values
        share: dict[str, float] = {}
        fnr: dict[str, float] = {}
        lab = labels.repeat_interleave(k) if labels is not None else None
        if lab is not None:
            fnr["real_neg"] = float((lab[:, None] == lab[None, :])[neg_m].double().mean()) if neg_m.any() else 0.0
        # synthetic negatives
        sneg = torch.zeros(0, dtype=s.dtype, device=z.device)
        if c.num_extra > 0:
            e = prepare(c.extra.detach(), similarity).to(a.dtype)
            se = a @ e.T  # [n, M]
            vis = torch.ones_like(se, dtype=torch.bool) if c.mask is None else _z_rows(c.mask, c, b, k)
            if c.positives is not None:
                vis = vis & ~_z_rows(c.positives, c, b, k)
            sneg = se[vis]
            share["synth_neg"] = float((se > hardest_neg[:, None])[vis].double().mean()) if vis.any() else 0.0
            elab = c.oracle_labels if c.oracle_labels is not None else c.extra_labels
            if lab is not None and elab is not None and vis.any():
                fnr["synth_neg"] = float((lab[:, None] == elab.to(z.device)[None, :])[vis].double().mean())
        out["synth_neg"] = sneg
        # synthetic positives: new or changed views, and positives columns
        spos_parts, harder_parts = [], []
        if c.views is not None:
            v = c.views.detach()
            kv = v.shape[1]
            changed = torch.ones(b, kv, dtype=torch.bool, device=z.device)
            common = min(k, kv)
            changed[:, :common] = ~(v[:, :common] == z.detach()[:, :common]).all(dim=-1)
            vf = prepare(v.reshape(b * kv, d), similarity)
            sv = (vf.view(b, kv, d) @ vf.view(b, kv, d).transpose(1, 2))  # [b, kv, kv]
            pair = (changed[:, :, None] | changed[:, None, :]) & ~torch.eye(kv, dtype=torch.bool, device=z.device)
            spos_parts.append(sv[pair])
            # hardest real positive of the sample (min over its real view pairs)
            hp = hardest_pos.view(b, k).min(dim=1).values  # [b]
            harder_parts.append((sv < hp[:, None, None])[pair])
        if c.positives is not None and c.num_extra > 0:
            pm = _z_rows(c.positives, c, b, k)
            spos_parts.append(se[pm])
            harder_parts.append((se < hardest_pos[:, None])[pm])
        out["synth_pos"] = torch.cat(spos_parts) if spos_parts else torch.zeros(0, dtype=s.dtype, device=z.device)
        if harder_parts:
            hh = torch.cat(harder_parts)
            share["synth_pos"] = float(hh.double().mean()) if hh.numel() else 0.0
    return HardnessReport({g: out[g].float().cpu() for g in GROUPS}, share, fnr, similarity)


def hardness_report(
    generator: Any, z: torch.Tensor, labels: torch.Tensor | None = None, similarity: str = "cosine", **context: Any
) -> HardnessReport:
    """Run ``generator(z, labels, **context)`` and compare its candidates with the in-batch ones.

    Examples:
        >>> rep = hardness_report(MoCHi(num_hard=16, num_mix=8, num_query_mix=4), z, labels)
        >>> rep.share_harder["synth_neg"], rep.false_negative_rate
    """
    z, labels = check_views(z, labels)
    with torch.no_grad():
        c = generator(z, labels, **context)
    if not isinstance(c, Candidates):
        raise TypeError(f"generator must return a pairlab.candidates.base.Candidates, got {type(c).__name__}")
    return report_from_candidates(z, c, labels, similarity)


def plot_hardness(report: HardnessReport, path: str | Path, title: str = "") -> Path:
    """Histograms of the four score groups (density), written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for g, color in zip(GROUPS, ("tab:green", "tab:blue", "tab:olive", "tab:red"), strict=True):
        x = report.scores[g]
        if x.numel():
            ax.hist(x.numpy(), bins=50, density=True, alpha=0.45, label=f"{g} (n={x.numel()})", color=color)
    ax.set_xlabel(f"{report.similarity} score against the anchor")
    ax.set_ylabel("density")
    ax.set_title(title or "candidate hardness")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def clustered_views(
    batch: int = 128, views: int = 2, dim: int = 32, classes: int = 10, noise: float = 0.3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic unit ``z [B, K, D]`` and ``labels [B]``: class centres on the sphere + sample + view noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    centres = centres / centres.norm(dim=1, keepdim=True)
    labels = torch.randint(classes, (batch,), generator=g)
    base = centres[labels] + noise * torch.randn(batch, dim, generator=g)
    z = base[:, None, :] + 0.5 * noise * torch.randn(batch, views, dim, generator=g)
    return z / z.norm(dim=-1, keepdim=True), labels


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def register(app: Any) -> None:
    """Add ``pairlab hardness`` to the typer app."""
    import typer

    @app.command("hardness")
    def hardness_cmd(
        name: str = typer.Argument(..., help="registered candidates generator, e.g. mochi, ft"),
        set_: list[str] = typer.Option([], "--set", help="constructor argument KEY=VALUE (JSON value), repeatable"),
        embeddings: Path | None = typer.Option(None, help="torch file with {'z': [B,K,D], 'labels': [B]}"),
        batch: int = typer.Option(128, help="synthetic batch size"),
        dim: int = typer.Option(32, help="synthetic embedding dim"),
        classes: int = typer.Option(10, help="synthetic classes"),
        seed: int = typer.Option(0, help="seed (data and global RNG)"),
        similarity: str = typer.Option("cosine", help="cosine or dot"),
        plot: Path | None = typer.Option(None, help="write score histograms to this PNG"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Report how hard a generator's candidates are compared with the in-batch ones."""
        from pairlab import registry

        kwargs = {}
        for item in set_:
            if "=" not in item:
                raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
            key, val = item.split("=", 1)
            kwargs[key] = _parse_value(val)
        torch.manual_seed(seed)
        if embeddings is not None:
            if not embeddings.exists():
                raise FileNotFoundError(f"embeddings file not found: {embeddings}")
            data = torch.load(embeddings, weights_only=True)
            if not isinstance(data, dict) or "z" not in data:
                raise ValueError("embeddings file must hold a dict with key 'z' ([B, K, D]) and optional 'labels'")
            z, labels = data["z"], data.get("labels")
        else:
            z, labels = clustered_views(batch, 2, dim, classes, seed=seed)
        gen = registry.build("candidates", name, **kwargs)
        rep = hardness_report(gen, z, labels, similarity=similarity)
        if plot is not None:
            plot_hardness(rep, plot, title=f"{name} candidates")
        typer.echo(json.dumps(rep.to_dict(), indent=2) if as_json else rep.format())
