"""Run configuration: one frozen dataclass per section, nested in :class:`TrainConfig`.

Sections: ``prior`` (what data), ``data`` (dataset shapes and batching), ``model`` (architecture),
``head`` (output distribution), ``optim`` (optimisation) and ``loop`` (checkpoints, logging,
in-training evaluation), plus the run ``seed``. A run saves ``TrainConfig.to_dict()`` and
``TrainConfig.from_dict`` rebuilds it exactly (``from_dict(to_dict(cfg)) == cfg``).

Every field also has a flat *alias*, its own name (``lr``, ``d_model``, ``steps``), or the one
in its metadata (``prior.name`` is ``prior``): aliases are unique across sections, so presets,
``TrainConfig.replace(lr=...)`` and the command line (``--lr``, also ``--optim.lr``) address
fields without spelling the section, and runs saved by the flat config of pfnjax 0.1 load.
Adding a field is one edit: its dataclass; the CLI flag is generated from it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Callable, Literal

from pfnjax.model.transformer import ATTENTION_IMPLS, AttentionImpl, ModelConfig


Split = Literal["uniform", "paper", "loguniform"]
SPLITS = typing.get_args(Split)
FeatureCountDist = Literal["uniform", "loguniform"]
FEATURE_COUNT_DISTS = typing.get_args(FeatureCountDist)


def _check_positive(section: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(section, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(section).__name__}.{name} must be a positive int, got {value!r}")


def _json_canonical(value: Any) -> Any:
    """Tuples become lists, as JSON would store them, so saved and fresh configs compare equal."""
    if isinstance(value, dict):
        return {str(k): _json_canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_canonical(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """Which registered prior to train on, and its settings (see :func:`pfnjax.get_prior`)."""

    name: str = dataclasses.field(default="gp", metadata={"alias": "prior"})
    kwargs: dict = dataclasses.field(default_factory=dict, metadata={"alias": "prior_kwargs"})

    def __post_init__(self) -> None:
        if not isinstance(self.kwargs, dict):
            raise ValueError(f"PriorConfig.kwargs must be a dict, got {self.kwargs!r}")
        object.__setattr__(self, "kwargs", _json_canonical(self.kwargs))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Dataset shapes and batching. Global batch = ``batch_size`` datasets per optimizer step,
    split over all devices and, with ``accum_steps > 1``, over that many micro-batches."""

    num_features: int = 5
    min_features: int | None = None  # None: every dataset uses all features
    # how a dataset's used-feature count is drawn from min_features..num_features: "uniform", or
    # "loguniform" (P(f) ~ 1/f: most datasets are narrow, as real tables are)
    feature_count_dist: FeatureCountDist = "uniform"
    seq_len: int = 200
    split: Split = "uniform"
    batch_size: int = 32
    accum_steps: int = 1
    # A length curriculum: ((from_step, seq_len, batch_size), ...). From each from_step on, datasets
    # have that many rows and batches that many datasets (long contexts late in a run cost less
    # than training on them throughout). Empty: seq_len and batch_size for the whole run.
    stages: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        _check_positive(self, ("num_features", "seq_len", "batch_size", "accum_steps"))
        object.__setattr__(self, "stages", tuple(tuple(int(v) for v in stage) for stage in self.stages))
        starts = [stage[0] for stage in self.stages]
        if any(len(stage) != 3 for stage in self.stages) or starts != sorted(set(starts)) or \
                any(start < 1 or seq_len < 2 or batch < 1 for start, seq_len, batch in self.stages):
            raise ValueError(f"stages must be (from_step >= 1, seq_len >= 2, batch_size >= 1) triples with "
                             f"increasing from_step, got {self.stages!r}")
        if self.seq_len < 2:
            raise ValueError(f"DataConfig.seq_len must be >= 2, got {self.seq_len}")
        if self.min_features is not None and not 1 <= self.min_features <= self.num_features:
            raise ValueError(f"min_features must be in [1, num_features={self.num_features}], got {self.min_features}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.feature_count_dist not in FEATURE_COUNT_DISTS:
            raise ValueError(f"feature_count_dist must be one of {FEATURE_COUNT_DISTS}, got {self.feature_count_dist!r}")


@dataclasses.dataclass(frozen=True)
class ArchitectureConfig:
    """Transformer size and numerics (see :class:`pfnjax.model.ModelConfig`)."""

    d_model: int = 512
    num_layers: int = 6
    num_heads: int = 8
    d_ff: int | None = None
    norm: Literal["pre", "post"] = "pre"
    feature_scaling: Literal["sqrt", "linear", "none"] = "sqrt"
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    # "auto": cuDNN flash attention on NVIDIA GPUs where it supports the shapes (bf16), XLA elsewhere
    attention_impl: AttentionImpl = dataclasses.field(default="auto", metadata={"flag": "attention"})

    def __post_init__(self) -> None:
        _check_positive(self, ("d_model", "num_layers", "num_heads"))
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Output-head settings; each head reads the ones it needs (:mod:`pfnjax.heads`)."""

    num_buckets: int = 1000  # bar distribution: buckets between equal-mass borders
    border_samples: int = 200_000  # bar distribution: prior draws of y that place the borders
    max_classes: int = 10  # classification: the largest number of classes the model predicts

    def __post_init__(self) -> None:
        _check_positive(self, ("num_buckets", "border_samples", "max_classes"))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup, then cosine decay to ``lr * min_lr_ratio``, after global-norm clipping."""

    steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        _check_positive(self, ("steps",))
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Checkpoints, logging and in-training evaluation (written to ``metrics.jsonl``)."""

    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    eval_every: int = 0  # 0: no in-training evaluation
    eval_datasets: int = 64  # held-out prior datasets per evaluation
    eval_context_sizes: tuple[int, ...] = (5, 20, 50)

    def __post_init__(self) -> None:
        _check_positive(self, ("checkpoint_every", "keep_checkpoints", "log_every", "eval_datasets"))
        object.__setattr__(self, "eval_context_sizes", tuple(int(n) for n in self.eval_context_sizes))
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if not self.eval_context_sizes or min(self.eval_context_sizes) < 1:
            raise ValueError(f"eval_context_sizes must be positive ints, got {self.eval_context_sizes}")


SECTIONS: dict[str, type] = {
    "prior": PriorConfig,
    "data": DataConfig,
    "model": ArchitectureConfig,
    "head": HeadConfig,
    "optim": OptimConfig,
    "loop": LoopConfig,
}


def _alias(field: dataclasses.Field) -> str:
    return field.metadata.get("alias", field.name)


def _build_aliases() -> dict[str, tuple[str, str]]:
    aliases: dict[str, tuple[str, str]] = {"seed": ("", "seed")}
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            alias = _alias(field)
            if alias in aliases:
                raise AssertionError(f"config alias {alias!r} is used twice")
            aliases[alias] = (section, field.name)
    return aliases


# flat alias -> (section, field); "" is the top level
ALIASES: dict[str, tuple[str, str]] = {}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Saved next to every checkpoint as JSON.

    Build one with :func:`pfnjax.presets.preset_config`, with sections
    (``TrainConfig(optim=OptimConfig(lr=3e-4))``), or from flat aliases
    (``TrainConfig.from_flat(lr=3e-4, d_model=128)``).
    """

    prior: PriorConfig = dataclasses.field(default_factory=PriorConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ArchitectureConfig = dataclasses.field(default_factory=ArchitectureConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for section, cls in SECTIONS.items():
            if not isinstance(getattr(self, section), cls):
                raise ValueError(f"TrainConfig.{section} must be a {cls.__name__}, got {getattr(self, section)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"TrainConfig.seed must be an int, got {self.seed!r}")

    def model_config(self, num_outputs: int, y_vocab: int) -> ModelConfig:
        """The architecture for a head with ``num_outputs`` logits and ``y_vocab`` label classes (0: real y)."""
        return ModelConfig(max_features=self.data.num_features, num_outputs=num_outputs, y_vocab=y_vocab,
                           **dataclasses.asdict(self.model))

    def stage_configs(self) -> list[tuple[int, "TrainConfig"]]:
        """``[(from_step, config), ...]``: the run's length-curriculum stages (:attr:`DataConfig.stages`),
        each a config without stages whose ``seq_len`` and ``batch_size`` hold from ``from_step`` on."""
        base = self.replace(stages=())
        out = [(0, base)]
        for start, seq_len, batch_size in self.data.stages:
            if start >= self.optim.steps:
                raise ValueError(f"stage starting at step {start} is beyond the run's {self.optim.steps} steps")
            out.append((start, base.replace(seq_len=seq_len, batch_size=batch_size)))
        return out

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`. Missing fields take their defaults; unknown ones are an error.
        A flat dict (the format of pfnjax 0.1 runs) is read through the aliases."""
        if not any(isinstance(v, dict) for k, v in data.items() if k in SECTIONS):
            return cls.from_flat(**data)
        unknown = sorted(set(data) - set(SECTIONS) - {"seed"})
        if unknown:
            raise ValueError(f"unknown TrainConfig sections: {unknown}")
        sections = {}
        for name, section_cls in SECTIONS.items():
            values = dict(data.get(name, {}))
            known = {f.name for f in dataclasses.fields(section_cls)}
            bad = sorted(set(values) - known)
            if bad:
                raise ValueError(f"unknown fields in TrainConfig.{name}: {bad}")
            sections[name] = section_cls(**values)
        return cls(**sections, seed=data.get("seed", 0))

    @classmethod
    def from_flat(cls, **fields: Any) -> "TrainConfig":
        """A config from flat aliases (``lr=...``, ``prior="gp"``); the rest keep their defaults."""
        return cls().replace(**fields)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with fields changed by flat alias (``lr=3e-4``) or whole sections (``optim=OptimConfig()``)."""
        per_section: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for key, value in changes.items():
            if key in SECTIONS and isinstance(value, SECTIONS[key]):
                top[key] = value
                continue
            if key not in ALIASES:
                raise ValueError(f"unknown TrainConfig field {key!r}; known: {sorted(ALIASES)}")
            section, field = ALIASES[key]
            if section:
                per_section.setdefault(section, {})[field] = value
            else:
                top[field] = value
        for section, values in per_section.items():
            top[section] = dataclasses.replace(top.get(section, getattr(self, section)), **values)
        return dataclasses.replace(self, **top)

    def flat(self) -> dict[str, Any]:
        """``{alias: value}`` for every field."""
        return {alias: getattr(getattr(self, s), f) if s else getattr(self, f) for alias, (s, f) in ALIASES.items()}


ALIASES.update(_build_aliases())


# --------------------------------------------------------------------------- command-line flags


def _flag_type(hint: Any) -> tuple[Callable | None, tuple | None]:
    """``(parser type, choices)`` for a resolved field type: a ``Literal`` gives choices, a dict or
    tuple is parsed as JSON, ``X | None`` as ``X``."""
    if typing.get_origin(hint) is Literal:
        return str, typing.get_args(hint)
    if hint is dict or typing.get_origin(hint) in (dict, tuple):
        return json.loads, None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), None


def add_config_flags(parser: Any) -> None:
    """Add one flag per config field to an ``argparse`` parser: ``--optim.lr`` and its alias ``--lr``.

    dict and tuple fields take JSON (``--prior-kwargs '{"noise": 0.01}'``). Unset flags stay None,
    so :func:`config_overrides` returns only what the user gave.
    """
    for alias, (section, field_name) in ALIASES.items():
        cls = SECTIONS[section] if section else TrainConfig
        field = next(f for f in dataclasses.fields(cls) if f.name == field_name)
        ftype, choices = _flag_type(typing.get_type_hints(cls)[field_name])
        is_json = ftype is json.loads
        names = [f"--{field.metadata.get('flag', alias).replace('_', '-')}"]
        if section:
            names.append(f"--{section}.{field_name}")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        help_text = f"{section or 'run'}.{field_name}{' (JSON)' if is_json else ''}; default {default!r}"
        parser.add_argument(*names, dest=f"cfg__{alias}", type=ftype, choices=choices,
                            default=None, help=help_text)


def config_overrides(args: Any) -> dict[str, Any]:
    """The ``{alias: value}`` the user set with the flags of :func:`add_config_flags`."""
    return {k[len("cfg__"):]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}


__all__ = [
    "ALIASES", "ArchitectureConfig", "DataConfig", "HeadConfig", "LoopConfig", "OptimConfig", "PriorConfig",
    "SECTIONS", "TrainConfig", "add_config_flags", "config_overrides",
]
