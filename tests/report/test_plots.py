import pytest
import torch

from pairlab.report.plots import NEUTRAL, plot_loss, plot_projection, plot_scores, projection_figure, write_plots

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


def _scatter_colours(fig):
    import matplotlib.colors as mcolors

    ax = fig.axes[0]
    return ax.get_title(), [tuple(mcolors.to_hex(c) for c in coll.get_facecolors()) for coll in ax.collections], \
        [len(coll.get_offsets()) for coll in ax.collections]


def test_unlabelled_projection_is_one_neutral_colour_with_a_title_saying_so(tmp_path):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(0)
    f = torch.randn(40, 5, generator=g)
    fig = projection_figure(f, torch.full((40,), -1), ())
    title, colours, counts = _scatter_colours(fig)
    plt.close(fig)
    assert "unlabelled" in title and counts == [40] and set(colours[0]) == {mcolors.to_hex(NEUTRAL)}
    assert fig.axes[0].get_legend() is None  # no class "0" (or any class) in a legend
    # labelled data keeps one colour per class and the class names in the legend
    fig = projection_figure(f, torch.arange(40) % 2, ("cat", "dog"))
    title, colours, counts = _scatter_colours(fig)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert "unlabelled" not in title and counts == [20, 20] and colours[0] != colours[1] and legend == ["cat", "dog"]
    assert plot_projection(f, torch.full((40,), -1), (), tmp_path / "u.png").read_bytes()[:8] == PNG
