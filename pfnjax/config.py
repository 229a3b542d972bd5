"""Run configuration: one frozen section per concern, nested in :class:`TrainConfig`.

Sections: ``prior`` (what data), ``data`` (dataset shapes and batching), ``model`` (the
architecture: the config dataclass of a registered model, :mod:`pfnjax.model`), ``head`` (each
registered head's own settings, :mod:`pfnjax.heads`), ``optim`` (optimisation) and ``loop``
(checkpoints, logging and the evaluators, :mod:`pfnjax.evaluators`), plus the run ``seed``. A
run saves ``TrainConfig.to_dict()`` and ``TrainConfig.from_dict`` rebuilds it exactly
(``from_dict(to_dict(cfg)) == cfg``). Every section validates itself when it is built, so a bad
setting fails at config time with the field's name and the allowed values.

Every field also has a flat *alias*, its own name (``lr``, ``d_model``, ``steps``), or the one
in its metadata (``prior.name`` is ``prior``). Aliases are unique across sections and cover the
settings of every registered architecture and head, so presets, ``TrainConfig.replace(lr=...)``
and the command line (``--lr``, also ``--optim.lr``) address fields without spelling the section;
``model="per_feature"`` (``--model``) selects an architecture. Runs saved by earlier versions
(the flat config of pfnjax 0.1; a model section without a name; head settings side by side;
``eval_every``) load. Adding a field is one edit: its dataclass; the CLI flag is generated from it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from typing import Any, Callable, Literal

from pfnjax.model.base import (
    DEFAULT_MODEL,
    MODELS,
    ModelConfigBase,
    ModelIO,
    model_class,
    model_config_from_dict,
)

Split = Literal["uniform", "paper", "loguniform"]
SPLITS = typing.get_args(Split)
FeatureCountDist = Literal["uniform", "loguniform"]
FEATURE_COUNT_DISTS = typing.get_args(FeatureCountDist)
SplitSharing = Literal["dataset", "step"]
SPLIT_SHARINGS = typing.get_args(SplitSharing)


def _check_positive(section: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(section, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(section).__name__}.{name} must be a positive int, got {value!r}")


def _json_canonical(value: Any) -> Any:
    """Tuples become lists, as JSON would store them, so saved and fresh configs compare equal
    (and config objects their dicts)."""
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return _json_canonical(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _json_canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_canonical(v) for v in value]
    return value


def _unchecked(cls: type, **values: Any) -> Any:
    """A frozen dataclass built without its ``__post_init__`` checks: for configs read back from a
    run, whose prior or evaluator may be registered only in the process that trained it."""
    obj = object.__new__(cls)
    for field in dataclasses.fields(cls):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        object.__setattr__(obj, field.name, values.pop(field.name, default))
    if values:
        raise ValueError(f"unknown fields in {cls.__name__}: {sorted(values)}")
    return obj


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- sections


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """Which prior to train on (see :func:`pfnjax.get_prior`).

    ``name`` is a registered prior, or ``"module:Class"`` for a prior class in a module of your
    own (imported when the config is built). A prior *instance* (``preset_config(..., prior=MyPrior())``)
    becomes a ``spec``: its saved fields (:func:`pfnjax.priors.base.prior_spec`), from which the
    run rebuilds it. The name and the settings are checked when the config is built.
    """

    name: str = dataclasses.field(default="gp", metadata={
        "alias": "prior", "help": "a registered prior, or module:Class for a prior class of your own"})
    kwargs: dict = dataclasses.field(default_factory=dict, metadata={
        "alias": "prior_kwargs", "help": "the prior's settings, e.g. '{\"noise\": 0.01}'"})
    spec: dict | None = dataclasses.field(default=None, metadata={
        "alias": "prior_spec", "flag": False, "help": "a prior instance's saved spec (set by passing an instance)"})

    def __post_init__(self) -> None:
        if not isinstance(self.kwargs, dict):
            raise ValueError(f"PriorConfig.kwargs must be a dict, got {self.kwargs!r}")
        object.__setattr__(self, "kwargs", _json_canonical(self.kwargs))
        from pfnjax.priors.base import check_prior_settings, prior_from_spec

        if self.spec is not None:
            if self.kwargs:
                raise ValueError("PriorConfig: give either a prior instance (spec) or name and kwargs, not both")
            object.__setattr__(self, "spec", _json_canonical(self.spec))
            prior_from_spec(self.spec)  # raises if its class is not registered
        else:
            check_prior_settings(self.name, self.kwargs)

    @classmethod
    def from_prior(cls, prior: Any) -> "PriorConfig":
        """The config of a prior instance. Its class is registered for saved specs if it is not
        yet (:func:`pfnjax.priors.base.register_prior`), so the run can rebuild it."""
        from pfnjax.priors.base import ensure_registered, prior_spec

        ensure_registered(type(prior))
        spec = prior_spec(prior)
        return cls(name=spec["class"], spec=spec)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Dataset shapes and batching. Global batch = ``batch_size`` datasets per optimizer step,
    split over all devices and, with ``accum_steps > 1``, over that many micro-batches."""

    num_features: int = dataclasses.field(default=5, metadata={"help": "F_max: feature columns of every dataset"})
    min_features: int | None = dataclasses.field(default=None, metadata={
        "help": "fewest used feature columns (None: every dataset uses all num_features)"})
    feature_count_dist: FeatureCountDist = dataclasses.field(default="uniform", metadata={
        "help": "how a dataset's used-feature count is drawn from min_features..num_features "
                "(loguniform: P(f) ~ 1/f, narrow tables common)"})
    seq_len: int = dataclasses.field(default=200, metadata={"help": "rows per dataset (context + queries)"})
    split: Split = dataclasses.field(default="uniform", metadata={
        "help": "context-size distribution: uniform, paper (P(n) ~ 1/(T-n)) or loguniform (P(n) ~ 1/n)"})
    split_sharing: SplitSharing = dataclasses.field(default="dataset", metadata={
        "help": "dataset: each dataset draws its own context size; step: one draw per step, shared by its "
                "datasets (less attention work, see docs)"})
    split_buckets: int = dataclasses.field(default=8, metadata={
        "help": "with split_sharing=step: compiled context-size ranges per stage"})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "datasets per optimizer step (global)"})
    accum_steps: int = dataclasses.field(default=1, metadata={"help": "micro-batches per optimizer step"})
    stages: tuple[tuple[int, int, int], ...] = dataclasses.field(default=(), metadata={
        "help": "length curriculum: [[from_step, seq_len, batch_size], ...]"})

    def __post_init__(self) -> None:
        _check_positive(self, ("num_features", "seq_len", "batch_size", "accum_steps", "split_buckets"))
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
        for name, allowed in (("split", SPLITS), ("feature_count_dist", FEATURE_COUNT_DISTS),
                              ("split_sharing", SPLIT_SHARINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """The settings of every registered head that has any (:attr:`pfnjax.heads.Head.Config`), by
    head kind. Each head owns its settings; the run's head (chosen by the prior's task) gets its own."""

    settings: tuple[tuple[str, Any], ...] = dataclasses.field(default_factory=lambda: HeadConfig._defaults())

    @staticmethod
    def _defaults() -> tuple[tuple[str, Any], ...]:
        from pfnjax.heads import HEADS

        return tuple(sorted((kind, cls.Config()) for kind, cls in HEADS.items() if cls.Config is not None))

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", tuple(sorted((str(k), v) for k, v in self.settings)))

    def for_kind(self, kind: str) -> Any:
        """The settings of head ``kind`` (None for a head without settings)."""
        return dict(self.settings).get(kind)

    def replace_kind(self, kind: str, **changes: Any) -> "HeadConfig":
        current = self.for_kind(kind)
        if current is None:
            raise ValueError(f"head {kind!r} has no settings")
        values = dict(self.settings)
        values[kind] = dataclasses.replace(current, **changes)
        return HeadConfig(tuple(values.items()))

    def to_dict(self) -> dict[str, Any]:
        return {kind: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else dict(value)
                for kind, value in self.settings}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        """Per-kind settings; a flat dict (runs saved before heads owned their settings) is split
        by the field names; settings of a head not registered here are kept as they are."""
        from pfnjax.heads import HEADS

        out = dict(cls().settings)
        if data and not all(isinstance(v, dict) for v in data.values()):
            owner = _head_field_owners()
            for name, value in data.items():
                if name not in owner:
                    raise ValueError(f"unknown head setting {name!r}; known: {sorted(owner)}")
                out[owner[name]] = dataclasses.replace(out[owner[name]], **{name: value})
            return cls(tuple(out.items()))
        for kind, values in data.items():
            head_cls = HEADS.get(kind)
            if head_cls is None or head_cls.Config is None:
                out[kind] = dict(values)
                continue
            known = {f.name for f in dataclasses.fields(head_cls.Config)}
            bad = sorted(set(values) - known)
            if bad:
                raise ValueError(f"unknown settings {bad} for head {kind!r}; its settings: {sorted(known)}")
            out[kind] = head_cls.Config(**values)
        return cls(tuple(out.items()))


def _head_field_owners() -> dict[str, str]:
    """``{setting name: head kind}`` over the registered heads' settings (names are unique)."""
    from pfnjax.heads import HEADS

    owner: dict[str, str] = {}
    for kind, cls in HEADS.items():
        for field in dataclasses.fields(cls.Config) if cls.Config is not None else ():
            if field.name in owner:
                raise AssertionError(f"heads {owner[field.name]!r} and {kind!r} both have a setting {field.name!r}")
            owner[field.name] = kind
    return owner


Optimizer = Literal["adamw", "muon"]
Averaging = Literal["none", "ema", "tail"]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optimizer, after global-norm clipping, with linear warmup then cosine decay to
    ``lr * min_lr_ratio``; and the weights inference uses.

    ``optimizer="muon"`` updates the matrix parameters with Muon (:func:`optax.contrib.muon`, peak
    rate ``muon_lr``) and the rest with AdamW (peak ``lr``). ``averaging`` keeps averaged weights
    next to the trained ones, and those are what :func:`pfnjax.load` and :meth:`pfnjax.PFN.from_train_result`
    use: ``"ema"`` an exponential moving average (``ema_decay``), ``"tail"`` the mean of the
    weights of the last ``tail_fraction`` of the steps.
    """

    steps: int = dataclasses.field(default=1000, metadata={"help": "optimizer steps"})
    lr: float = dataclasses.field(default=1e-3, metadata={"help": "peak learning rate (AdamW)"})
    warmup_steps: int = dataclasses.field(default=100, metadata={"help": "linear warmup steps"})
    min_lr_ratio: float = dataclasses.field(default=0.0, metadata={"help": "final lr as a fraction of lr"})
    weight_decay: float = dataclasses.field(default=0.0, metadata={"help": "decoupled weight decay"})
    clip_norm: float = dataclasses.field(default=1.0, metadata={"help": "global gradient-norm clip"})
    optimizer: Optimizer = dataclasses.field(default="adamw", metadata={
        "help": "adamw, or muon (Muon on matrix parameters, AdamW on the rest)"})
    muon_lr: float = dataclasses.field(default=0.02, metadata={"help": "peak learning rate of Muon's matrices"})
    averaging: Averaging = dataclasses.field(default="none", metadata={
        "help": "weights for inference: none (the trained ones), ema, or tail (mean of the last steps')"})
    ema_decay: float = dataclasses.field(default=0.999, metadata={"help": "with averaging=ema: the decay"})
    tail_fraction: float = dataclasses.field(default=0.25, metadata={
        "help": "with averaging=tail: the fraction of the last steps averaged"})

    def __post_init__(self) -> None:
        _check_positive(self, ("steps",))
        if not self.lr > 0 or not self.muon_lr > 0:
            raise ValueError(f"lr and muon_lr must be > 0, got {self.lr}, {self.muon_lr}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        for name, allowed in (("optimizer", typing.get_args(Optimizer)), ("averaging", typing.get_args(Averaging))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 < self.ema_decay < 1.0 or not 0.0 < self.tail_fraction <= 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) and tail_fraction in (0, 1], got {self.ema_decay}, "
                             f"{self.tail_fraction}")

    @property
    def tail_start(self) -> int:
        """With ``averaging="tail"``: the first step whose weights enter the mean."""
        return self.steps - max(1, int(round(self.tail_fraction * self.steps)))


@dataclasses.dataclass(frozen=True)
class EvalEntry:
    """One in-training evaluator: its registered ``type``, its schedule and its settings.

    Written as a dict, ``{"type": "held_out", "every": 500, "num_datasets": 128}``: ``every`` (steps
    between evaluations, and once at the end of the run), an optional ``name`` (the key of its
    metrics, default the type) and the evaluator's own settings (:mod:`pfnjax.evaluators`).
    """

    type: str
    every: int
    name: str = ""
    settings: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"evaluator {self.type!r}: every must be a positive int, got {self.every!r}")
        object.__setattr__(self, "settings", _json_canonical(self.settings))
        object.__setattr__(self, "name", self.name or self.type)
        from pfnjax.evaluators import evaluator_settings

        evaluator_settings(self.type, self.settings)  # raises naming the type or setting

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "every": self.every, "name": self.name, **self.settings}

    @classmethod
    def from_dict(cls, data: Any, checked: bool = True) -> "EvalEntry":
        if isinstance(data, EvalEntry):
            return data
        if not isinstance(data, dict) or "type" not in data or "every" not in data:
            raise ValueError(f"an evaluator entry is a dict with 'type' and 'every' (steps), got {data!r}")
        data = dict(data)
        fields = dict(type=data.pop("type"), every=data.pop("every"), name=data.pop("name", ""), settings=data)
        if checked:
            return cls(**fields)
        fields["name"] = fields["name"] or fields["type"]
        return _unchecked(cls, **fields)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Checkpoints, logging, and the evaluators run during training (written to ``metrics.jsonl``)."""

    checkpoint_every: int = dataclasses.field(default=500, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int = dataclasses.field(default=3, metadata={"help": "latest checkpoints kept (plus the best)"})
    log_every: int = dataclasses.field(default=10, metadata={"help": "steps between metrics.jsonl lines"})
    evals: tuple[EvalEntry, ...] = dataclasses.field(default=(), metadata={
        "help": "evaluators during training: [{\"type\": \"held_out\", \"every\": 500, ...}, ...]"})

    def __post_init__(self) -> None:
        _check_positive(self, ("checkpoint_every", "keep_checkpoints", "log_every"))
        entries = tuple(EvalEntry.from_dict(e) for e in self.evals)
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluator names must be unique (give a 'name' to repeated types), got {names}")
        object.__setattr__(self, "evals", entries)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["evals"] = [e.to_dict() for e in self.evals]
        return out


def _legacy_loop(values: dict) -> dict:
    """Runs saved before the evaluator list: ``eval_every`` > 0 meant one held-out evaluator."""
    values = dict(values)
    every = values.pop("eval_every", 0)
    datasets = values.pop("eval_datasets", None)
    sizes = values.pop("eval_context_sizes", None)
    if every:
        entry = {"type": "held_out", "every": every}
        if datasets is not None:
            entry["num_datasets"] = datasets
        if sizes is not None:
            entry["context_sizes"] = list(sizes)
        values["evals"] = [*values.get("evals", []), entry]
    return values


SECTIONS: dict[str, type] = {
    "prior": PriorConfig,
    "data": DataConfig,
    "model": ModelConfigBase,
    "head": HeadConfig,
    "optim": OptimConfig,
    "loop": LoopConfig,
}
PLAIN_SECTIONS = ("prior", "data", "optim", "loop")  # sections that are one fixed dataclass


def _alias(field: dataclasses.Field) -> str:
    return field.metadata.get("alias", field.name)


@dataclasses.dataclass(frozen=True)
class Alias:
    """Where a flat alias points: a section and a field (``head`` fields also name their head kind;
    ``model`` fields may exist in several architectures)."""

    section: str
    field: str
    kind: str = ""
    owner: Any = None  # the dataclass that declares the field (for types, defaults and help)


def aliases() -> dict[str, Alias]:
    """Every flat alias, from the sections and the registered architectures and heads (computed on
    each call, so architectures and heads registered later have aliases too)."""
    from pfnjax.heads import HEADS
    from pfnjax.model.base import _discover

    _discover()
    out: dict[str, Alias] = {"seed": Alias("", "seed", owner=TrainConfig), "model": Alias("model", "name")}

    def add(name: str, alias: Alias) -> None:
        if name in out and (out[name].section, out[name].field) != (alias.section, alias.field):
            raise AssertionError(f"config alias {name!r} is used twice")
        out.setdefault(name, alias)

    for section in PLAIN_SECTIONS:
        for field in dataclasses.fields(SECTIONS[section]):
            add(_alias(field), Alias(section, field.name, owner=SECTIONS[section]))
    for name in sorted(MODELS):
        for field in dataclasses.fields(MODELS[name]):
            add(_alias(field), Alias("model", field.name, owner=MODELS[name]))
    for kind, cls in sorted(HEADS.items()):
        for field in dataclasses.fields(cls.Config) if cls.Config is not None else ():
            add(_alias(field), Alias("head", field.name, kind, owner=cls.Config))
    return out


def _default_model() -> ModelConfigBase:
    return model_class(DEFAULT_MODEL)()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Saved next to every checkpoint as JSON.

    Build one with :func:`pfnjax.presets.preset_config`, with sections
    (``TrainConfig(optim=OptimConfig(lr=3e-4))``), or from flat aliases
    (``TrainConfig.from_flat(lr=3e-4, d_model=128)``).
    """

    prior: PriorConfig = dataclasses.field(default_factory=PriorConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfigBase = dataclasses.field(default_factory=_default_model)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    seed: int = dataclasses.field(default=0, metadata={"help": "run seed (data, init, head and eval streams)"})

    def __post_init__(self) -> None:
        for section, cls in SECTIONS.items():
            if not isinstance(getattr(self, section), cls):
                raise ValueError(f"TrainConfig.{section} must be a {cls.__name__}, got {getattr(self, section)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"TrainConfig.seed must be an int, got {self.seed!r}")

    def model_io(self, num_outputs: int, y_vocab: int) -> ModelIO:
        """The model's inputs and outputs for a head with ``num_outputs`` logits and ``y_vocab`` label classes."""
        return ModelIO(self.data.num_features, num_outputs, y_vocab)

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
        return {
            "prior": dataclasses.asdict(self.prior),
            "data": dataclasses.asdict(self.data),
            "model": self.model.to_dict(),
            "head": self.head.to_dict(),
            "optim": dataclasses.asdict(self.optim),
            "loop": self.loop.to_dict(),
            "seed": self.seed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, checked: bool = True) -> "TrainConfig":
        """Inverse of :meth:`to_dict`. Missing fields take their defaults; unknown ones are an error.
        A flat dict (the format of pfnjax 0.1 runs) is read through the aliases.

        ``checked=False`` (reading a saved run) skips the checks that need the run's own code
        registered: its prior and its evaluators may come from modules this process has not imported.
        """
        if not any(isinstance(v, dict) for k, v in data.items() if k in SECTIONS):
            data = cls.from_flat(**{k: v for k, v in data.items() if k not in ("prior", "prior_kwargs")},
                                 ).to_dict() | {"prior": {"name": data.get("prior", "gp"),
                                                          "kwargs": data.get("prior_kwargs", {})}}
        unknown = sorted(set(data) - set(SECTIONS) - {"seed"})
        if unknown:
            raise ValueError(f"unknown TrainConfig sections: {unknown}")
        sections: dict[str, Any] = {}
        for name in PLAIN_SECTIONS:
            section_cls = SECTIONS[name]
            values = dict(data.get(name, {}))
            if name == "loop":
                values = _legacy_loop(values)
                values["evals"] = tuple(EvalEntry.from_dict(e, checked) for e in values.get("evals", ()))
            known = {f.name for f in dataclasses.fields(section_cls)}
            bad = sorted(set(values) - known)
            if bad:
                raise ValueError(f"unknown fields in TrainConfig.{name}: {bad}")
            if name == "prior" and not checked:
                sections[name] = _unchecked(section_cls, **values)
            elif name == "loop" and not checked:
                _check_positive(_unchecked(section_cls, **values), ("checkpoint_every", "keep_checkpoints", "log_every"))
                sections[name] = _unchecked(section_cls, **values)
            else:
                sections[name] = section_cls(**values)
        sections["model"] = model_config_from_dict(data.get("model", {}))
        sections["head"] = HeadConfig.from_dict(data.get("head", {}))
        return cls(**sections, seed=data.get("seed", 0))

    @classmethod
    def from_flat(cls, **fields: Any) -> "TrainConfig":
        """A config from flat aliases (``lr=...``, ``prior="gp"``); the rest keep their defaults."""
        return cls().replace(**fields)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with fields changed by flat alias (``lr=3e-4``), whole sections
        (``optim=OptimConfig()``), an architecture by name (``model="classic"``) or a prior instance
        (``prior=MyPrior()``)."""
        table = aliases()
        top: dict[str, Any] = {}
        per_section: dict[str, dict[str, Any]] = {}
        per_head: dict[str, dict[str, Any]] = {}
        model_name = None
        prior_instance = None
        for key, value in changes.items():
            if key in SECTIONS and isinstance(value, SECTIONS[key]):
                top[key] = value
                continue
            if key == "model":
                if not isinstance(value, str):
                    raise ValueError(f"model must be a registered architecture's name or config, got {value!r}")
                model_name = value
                continue
            if key == "prior" and not isinstance(value, str):
                prior_instance = value
                continue
            if key not in table:
                raise ValueError(f"unknown TrainConfig field {key!r}{_suggest(key, list(table))}; known: {sorted(table)}")
            alias = table[key]
            if alias.section == "head":
                per_head.setdefault(alias.kind, {})[alias.field] = value
            elif alias.section:
                per_section.setdefault(alias.section, {})[alias.field] = value
            else:
                top[alias.field] = value
        if model_name is not None:
            top["model"] = model_class(model_name)()
        model_changes = per_section.pop("model", {})
        if model_changes:
            top["model"] = top.get("model", self.model).replace(**model_changes)
        if prior_instance is not None:
            top["prior"] = PriorConfig.from_prior(prior_instance)
        prior_changes = per_section.pop("prior", {})
        if prior_changes:
            base = top.get("prior", self.prior)
            if "name" in prior_changes and "spec" not in prior_changes:
                prior_changes["spec"] = None  # a named prior replaces an instance
            top["prior"] = dataclasses.replace(base, **prior_changes)
        for section, values in per_section.items():
            base = top.get(section, getattr(self, section))
            top[section] = dataclasses.replace(base, **values)
        head = top.get("head", self.head)
        for kind, values in per_head.items():
            head = head.replace_kind(kind, **values)
        if per_head:
            top["head"] = head
        return dataclasses.replace(self, **top)

    def flat(self) -> dict[str, Any]:
        """``{alias: value}`` for every field of this config (the selected architecture's settings,
        every head's settings)."""
        out: dict[str, Any] = {}
        for name, alias in aliases().items():
            if alias.section == "model":
                if alias.field == "name":
                    out[name] = self.model.name
                elif alias.owner is type(self.model):
                    out[name] = getattr(self.model, alias.field)
            elif alias.section == "head":
                settings = self.head.for_kind(alias.kind)
                if settings is not None and not isinstance(settings, dict):
                    out[name] = getattr(settings, alias.field)
            elif alias.section:
                out[name] = getattr(getattr(self, alias.section), alias.field)
            else:
                out[name] = getattr(self, alias.field)
        return out


def config_differences(old: TrainConfig | dict, new: TrainConfig | dict, prefix: str = "") -> list[str]:
    """``["optim.steps: 400 -> 450", ...]``: the fields whose values differ (JSON values)."""
    a = json.loads(old.to_json()) if isinstance(old, TrainConfig) else old
    b = json.loads(new.to_json()) if isinstance(new, TrainConfig) else new
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(config_differences(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out.append(f"{prefix}{key}: {json.dumps(va)} -> {json.dumps(vb)}")
    return out


# --------------------------------------------------------------------------- command-line flags


def _flag_type(hint: Any) -> tuple[Callable | None, tuple | None, str]:
    """``(parser type, choices, metavar)`` for a resolved field type: a ``Literal`` gives choices,
    a dict or tuple is parsed as JSON, ``X | None`` as ``X``."""
    if typing.get_origin(hint) is Literal:
        return str, typing.get_args(hint), None
    if hint is dict or typing.get_origin(hint) in (dict, tuple) or hint is EvalEntry:
        return json.loads, None, "JSON"
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if typing.get_origin(base) is Literal:
        return str, typing.get_args(base), None
    if base is dict or typing.get_origin(base) in (dict, tuple):
        return json.loads, None, "JSON"
    return base, None, {int: "INT", float: "FLOAT", str: "STR", bool: "BOOL"}.get(base, "VALUE")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def add_config_flags(parser: Any, defaults: TrainConfig | None = None) -> None:
    """Add one flag per config field to an ``argparse`` parser: ``--optim.lr`` and its alias ``--lr``.

    dict and tuple fields take JSON (``--prior-kwargs '{"noise": 0.01}'``). Unset flags stay None,
    so :func:`config_overrides` returns only what the user gave. ``defaults`` (the config a run
    would use, e.g. its preset's) is what the help shows as each field's default.
    """
    from pfnjax.model.base import model_names
    from pfnjax.priors.base import prior_names

    shown = (defaults or TrainConfig()).flat()
    for alias, where in aliases().items():
        if alias == "model":
            parser.add_argument("--model", dest="cfg__model", default=None, choices=model_names(),
                                help=f"architecture; default {shown['model']!r} (its settings are flags too)")
            continue
        field = next(f for f in dataclasses.fields(where.owner) if f.name == where.field)
        if field.metadata.get("flag", True) is False:
            continue
        ftype, choices, metavar = _flag_type(typing.get_type_hints(where.owner)[where.field])
        if ftype is bool:
            ftype = _parse_bool
        is_json = ftype is json.loads
        names = [f"--{field.metadata.get('flag', alias).replace('_', '-')}"]
        dotted = where.field if where.section != "head" else f"{where.kind}.{where.field}"
        if where.section:
            names.append(f"--{where.section}.{dotted}")
        where_text = (f"model {where.owner.name!r}" if where.section == "model" else
                      f"head {where.kind!r}" if where.section == "head" else None)
        help_text = field.metadata.get("help", "")
        if alias == "prior":
            help_text += f"; registered: {', '.join(prior_names())}"
        default = shown.get(alias, "n/a for this architecture")
        help_text = (f"{help_text}{'; ' if help_text else ''}{where_text + ' setting; ' if where_text else ''}"
                     f"default {json.dumps(_json_canonical(default)) if is_json else repr(default)}")
        parser.add_argument(*names, dest=f"cfg__{alias}", type=ftype, choices=choices, metavar=metavar,
                            default=None, help=help_text.replace("%", "%%"))


def config_overrides(args: Any) -> dict[str, Any]:
    """The ``{alias: value}`` the user set with the flags of :func:`add_config_flags`."""
    return {k[len("cfg__"):]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}


__all__ = [
    "Alias", "DataConfig", "EvalEntry", "HeadConfig", "LoopConfig", "OptimConfig", "PriorConfig", "SECTIONS",
    "TrainConfig", "add_config_flags", "aliases", "config_differences", "config_overrides",
]
