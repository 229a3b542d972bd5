"""Training configuration and named presets."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

from pfnjax.model import ATTENTION_IMPLS, ModelConfig
from pfnjax.model.transformer import AttentionImpl


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Saved next to every checkpoint as JSON.

    Global batch = ``batch_size`` datasets per optimizer step, split over all devices and,
    with ``accum_steps > 1``, over that many sequential micro-batches.
    """

    # prior and data shape
    prior: str = "gp"
    prior_kwargs: dict = dataclasses.field(default_factory=dict)
    num_features: int = 5
    min_features: int | None = None  # None: every dataset uses all features
    seq_len: int = 200
    split: Literal["uniform", "paper", "loguniform"] = "uniform"
    # optimisation
    batch_size: int = 32
    accum_steps: int = 1
    steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    seed: int = 0
    # output distribution
    num_buckets: int = 1000
    border_samples: int = 200_000
    max_classes: int = 10
    # model
    d_model: int = 512
    num_layers: int = 6
    num_heads: int = 8
    d_ff: int | None = None
    norm: Literal["pre", "post"] = "pre"
    feature_scaling: Literal["sqrt", "linear", "none"] = "sqrt"
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    # "auto": cuDNN flash attention on NVIDIA GPUs where it supports the shapes (bf16), XLA elsewhere
    attention_impl: AttentionImpl = "auto"
    # bookkeeping
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10

    def __post_init__(self) -> None:
        positive = ("num_features", "seq_len", "batch_size", "accum_steps", "steps", "num_buckets",
                    "d_model", "num_layers", "num_heads", "checkpoint_every", "keep_checkpoints", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if self.seq_len < 2:
            raise ValueError(f"TrainConfig.seq_len must be >= 2, got {self.seq_len}")
        if self.min_features is not None and not 1 <= self.min_features <= self.num_features:
            raise ValueError(f"min_features must be in [1, num_features={self.num_features}], got {self.min_features}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")

    def model_config(self, task: str, num_outputs: int) -> ModelConfig:
        return ModelConfig(
            max_features=self.num_features,
            num_outputs=num_outputs,
            task=task,
            d_model=self.d_model,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            norm=self.norm,
            feature_scaling=self.feature_scaling,
            compute_dtype=self.compute_dtype,
            attention_impl=self.attention_impl,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


# Presets fix the data shape, model size and schedule; the prior comes from the caller.
PRESETS: dict[str, dict[str, Any]] = {
    # Finishes in minutes on a 2-core laptop CPU (see README for its measured GP gap).
    # 1-D GP with noise variance 0.01: the paper's 1e-4 gives near-deterministic posteriors
    # (exact NLL -3 at 100 points) that a 0.1M-parameter model cannot resolve in minutes.
    "tiny": dict(num_features=1, seq_len=120, split="loguniform", batch_size=32, steps=2000, lr=1e-3,
                 warmup_steps=100, d_model=64, num_layers=3, num_heads=4, d_ff=128, num_buckets=200,
                 border_samples=100_000, checkpoint_every=500, log_every=25,
                 prior_defaults={"gp": {"noise": 0.01}}),
    # For tests and smoke runs: seconds on a CPU.
    "test": dict(num_features=2, seq_len=32, batch_size=8, steps=20, lr=1e-3, warmup_steps=2,
                 d_model=32, num_layers=2, num_heads=2, d_ff=64, num_buckets=50, border_samples=5_000,
                 checkpoint_every=10, log_every=5),
    # A laptop-sized classification run (SCM / TabPFN prior).
    "tiny-cls": dict(num_features=5, seq_len=128, batch_size=32, steps=2000, lr=1e-3, warmup_steps=100,
                     d_model=64, num_layers=3, num_heads=4, d_ff=128, checkpoint_every=500, log_every=25),
    # Benchmark workloads (the PyTorch reference pfns has been measured on these; benchmarks/gpu_check.sh).
    "gp-200": dict(num_features=5, seq_len=200, batch_size=128, d_model=256, num_layers=4, num_heads=4,
                   steps=10_000, lr=3e-4, warmup_steps=500),
    # The 2-core-CPU reference workload (PyTorch pfns measured at 36.4 datasets/s).
    "cpu-ref": dict(num_features=5, seq_len=200, batch_size=16, d_model=128, num_layers=4, num_heads=4,
                    steps=100, lr=1e-3, warmup_steps=10),
    "gp-1000": dict(num_features=5, seq_len=1000, batch_size=64, d_model=512, num_layers=6, num_heads=8,
                    steps=10_000, lr=1e-4, warmup_steps=500),
    # The shipped pretrained models (pfnjax/pretrained/, the default models of pfnjax.sklearn):
    # about 10 minutes each on a 2-core CPU. 1 to 10 features per dataset, uniform context sizes 1..191.
    "reg-tiny": dict(prior="bnn", num_features=10, min_features=1, seq_len=192, split="uniform",
                     batch_size=32, steps=2500, lr=1e-3, warmup_steps=100, d_model=64, num_layers=3,
                     num_heads=4, d_ff=128, num_buckets=500, border_samples=200_000, checkpoint_every=500,
                     keep_checkpoints=1, log_every=25),
    "cls-tiny": dict(prior="scm", num_features=10, min_features=1, seq_len=192, split="uniform",
                     batch_size=32, steps=2500, lr=1e-3, warmup_steps=100, d_model=64, num_layers=3,
                     num_heads=4, d_ff=128, max_classes=10, checkpoint_every=500, keep_checkpoints=1,
                     log_every=25, prior_defaults={"scm": {"missing_rate": 0.02}}),
}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with ``overrides`` applied (``None`` values are ignored).

    A preset's ``prior_defaults[prior]`` are merged under ``prior_kwargs``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    fields = dict(PRESETS[name])
    prior_defaults = fields.pop("prior_defaults", {})
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("warmup_steps") is None and fields.get("warmup_steps", 0) > fields.get("steps", 1):
        fields["warmup_steps"] = fields["steps"] // 10  # a shortened run keeps a proportional warmup
    # A preset may tune a prior's settings; the caller's prior_kwargs win.
    prior = fields.get("prior", TrainConfig.prior)
    fields["prior_kwargs"] = {**prior_defaults.get(prior, {}), **fields.get("prior_kwargs", {})}
    return TrainConfig(**fields)
