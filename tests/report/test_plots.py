import pytest
import torch

from pairlab.report.plots import plot_loss, plot_projection, plot_scores, write_plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_each_plot_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    assert plot_loss([3.0 - 0.01 * i for i in range(120)], tmp_path / "l.png").read_bytes()[:8] == PNG
    pos, neg = torch.rand(50, generator=g), torch.rand(500, generator=g) - 0.5
    assert plot_scores(pos, neg, tmp_path / "s.png").read_bytes()[:8] == PNG
    f, y = torch.randn(90, 6, generator=g), torch.arange(90) % 3
    assert plot_projection(f, y, ("a", "b", "c"), tmp_path / "p.png").read_bytes()[:8] == PNG


def test_write_plots_only_what_it_has(tmp_path):
    out = write_plots(tmp_path, [1.0, 0.5], {}, ())
    assert set(out) == {"loss"} and (tmp_path / "loss.png").is_file() and not (tmp_path / "scores.png").exists()


def test_readme_table_helper_rejects_missing_markers(tmp_path):
    from pairlab.report.readme import update_readme

    p = tmp_path / "R.md"
    p.write_text("no markers")
    with pytest.raises(ValueError, match="methods:start"):
        update_readme(p)
