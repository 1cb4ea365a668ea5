"""``pairlab compare``: grids of training runs (variants x seeds) and their leaderboards.

- :mod:`pairlab.compare.grid`: variants, grid files, :func:`compare` (run, resume, collect rows).
- :mod:`pairlab.compare.leaderboard`: aggregation (mean ± std over seeds), CSV, Markdown, one PNG per metric.
- :mod:`pairlab.compare.mfeat`: UCI multiple-features views, per-view MLP encoder and mini training loop.
- :mod:`pairlab.compare.cli`: the command line.
"""

from pairlab.compare.grid import Grid, Variant, compare, load_grid, objective_variants, parse_set
from pairlab.compare.leaderboard import aggregate, write_leaderboard

__all__ = ["Grid", "Variant", "aggregate", "compare", "load_grid", "objective_variants", "parse_set",
           "write_leaderboard"]
