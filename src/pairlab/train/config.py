"""Run configuration: a pydantic model (unknown keys rejected), loaded from YAML and overridden by flags.

Precedence: defaults < ``--config FILE`` (YAML, ``yaml.safe_load``) < command-line flags. The embedded
default (``pairlab train`` with no argument) is Fashion-MNIST + NT-Xent sized to finish in about 5
minutes on 2 CPU cores, evaluation included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pairlab.data.views import AugmentConfig
from pairlab.train.tracking import DEFAULT_LOGGERS, parse_loggers


class ModelConfig(BaseModel):
    """Backbone/head sizes (see :mod:`pairlab.models.encoder`)."""

    model_config = ConfigDict(extra="forbid")
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: int = Field(1, ge=1)
    stem_stride: int = Field(2, ge=1, le=2)
    hidden_dim: int = Field(256, ge=1)
    proj_dim: int = Field(64, ge=1)


class EvalConfig(BaseModel):
    """Evaluation protocol on frozen backbone features (same for learned, raw-pixel and random-init rows)."""

    model_config = ConfigDict(extra="forbid")
    knn_k: int = Field(20, ge=1)
    knn_temperature: float = Field(0.07, gt=0)
    linear_l2: float = Field(1e-4, ge=0)
    linear_max_iter: int = Field(200, ge=1)
    train_subset: int | None = Field(None, ge=1, description="first N training images used (None: all)")
    test_subset: int | None = Field(None, ge=1)
    geometry_samples: int = Field(2000, ge=2, description="test images for alignment/uniformity/histograms")
    baselines: bool = True
    plots: bool = True


class TrainConfig(BaseModel):
    """Everything a run needs; saved as ``runs/<name>/config.yaml``."""

    model_config = ConfigDict(extra="forbid")
    name: str = "fmnist-ntxent"
    dataset: str = Field("fmnist", description="registered data set (fmnist, digits) or your own data: folder:PATH "
                         "(images), npz:PATH / parquet:PATH (arrays, embeddings), csv:PATH (text)")
    data_dir: str | None = None
    image_size: int | None = Field(None, ge=4, description="user images resized to this square side "
                                   "(folder: default 28; arrays: kept unless not square)")
    image_mode: str = Field("auto", pattern="^(auto|L|RGB)$", description="user images: grayscale L, RGB, or auto "
                            "(from the first image)")
    text_column: str | None = Field(None, description="csv:PATH: the text column (default: text or sentence)")
    objective: str = "ntxent"
    objective_args: dict[str, Any] = Field(default_factory=dict)
    candidates: str | None = Field(None, description="registered candidates component, e.g. queue, mochi")
    candidates_args: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(None, description="registered weights component, e.g. hcl-hardness, meow")
    weights_args: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(0.2, gt=0, description="passed to objectives that take one (unless set in "
                                      "objective_args); null (--temperature default): each objective's own default, "
                                      "e.g. SimLAP's paper 0.1. 0.2 is the NT-Xent default of this config")
    epochs: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps in total")
    train_subset: int | None = Field(None, ge=2, description="first N training images used for training")
    batch_size: int = Field(256, ge=2)
    views: int = Field(2, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_frac: float = Field(0.05, ge=0, le=1)
    seed: int = 0
    deterministic: bool = False
    grad_cache_chunk: int | None = Field(None, ge=1)
    device: str = "cpu"
    runs_dir: str = "runs"
    checkpoint_every: int | None = Field(None, ge=1, description="also checkpoint every N steps (epoch ends always)")
    loggers: list[str] = Field(default_factory=lambda: list(DEFAULT_LOGGERS),
                               description="tracking backends: tensorboard, csv, mlflow ([] or none: off)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    # the 5-minute demo probes on the first 20k training images (balanced classes); configs/fmnist-long.yaml uses all
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig(train_subset=20000))

    @field_validator("loggers", mode="before")
    @classmethod
    def _known_loggers(cls, v: Any) -> list[str]:
        """A list or comma-separated string of :data:`pairlab.train.tracking.LOGGERS` names."""
        return parse_loggers(v if isinstance(v, (str, list, tuple)) else [v])

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, v: str) -> str:
        """The run directory is ``runs_dir/name``: a name must not reach outside ``runs_dir``."""
        if not v or v in (".", "..") or "/" in v or "\\" in v or "\0" in v:
            raise ValueError("must be a plain directory name (no '/', '\\', '.' or '..'), so the run stays "
                             "inside runs_dir")
        return v


def _format_error(e: ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    keys = sorted(TrainConfig.model_fields)
    return f"invalid configuration ({source}): " + "; ".join(parts) + f". Valid top-level keys: {keys}"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def make_config(data: dict[str, Any] | None = None, source: str = "arguments") -> TrainConfig:
    """Validate a dict into a :class:`TrainConfig`; errors become one readable ValueError."""
    try:
        return TrainConfig.model_validate(data or {})
    except ValidationError as e:
        raise ValueError(_format_error(e, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:  # safe loader: python tags are refused here too
        raise ValueError(f"config file {str(p)!r} is not valid YAML: {' '.join(str(e).split())[:300]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(p)!r} must hold a mapping at top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults < YAML file < ``overrides`` (``None`` values in overrides are ignored)."""
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    return make_config(_merge(data, over), source=str(path) if path is not None else "arguments")


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
