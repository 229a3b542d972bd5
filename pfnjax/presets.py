"""Named run presets: data shape, model size and schedule, written with flat config aliases.

``preset_config("tiny", prior="gp", steps=500)`` is the ``tiny`` preset for the GP prior with
500 steps. A preset may tune priors' settings (``prior_defaults``); the caller's
``prior_kwargs`` win. Add a preset by adding an entry here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pfnjax.config import TrainConfig

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
    # The 2-core-CPU reference workloads (benchmarks/train_throughput.py --reference runs the PyTorch
    # pfns workload of the same shape beside them): T=200, and T=1,024 (cls-small's long stage).
    "cpu-ref": dict(num_features=5, seq_len=200, batch_size=16, d_model=128, num_layers=4, num_heads=4,
                    steps=100, lr=1e-3, warmup_steps=10),
    "cpu-ref-1024": dict(num_features=5, seq_len=1024, batch_size=8, d_model=128, num_layers=4, num_heads=4,
                         steps=100, lr=1e-3, warmup_steps=10),
    "gp-1000": dict(num_features=5, seq_len=1000, batch_size=64, d_model=512, num_layers=6, num_heads=8,
                    steps=10_000, lr=1e-4, warmup_steps=500),
    # The shipped pretrained models (pfnjax/pretrained/, the default models of pfnjax.sklearn):
    # about 10 minutes each on a 2-core CPU. 1 to 10 features per dataset, uniform context sizes 1..191.
    "reg-tiny": dict(prior="bnn", num_features=10, min_features=1, seq_len=192, split="uniform",
                     batch_size=32, steps=2500, lr=1e-3, warmup_steps=100, d_model=64, num_layers=3,
                     num_heads=4, d_ff=128, num_buckets=500, border_samples=200_000, checkpoint_every=500,
                     keep_checkpoints=1, log_every=25),
    # Bayesian optimisation (pfnjax.bo): functions on the unit cube in 1 to 6 dimensions, up to 100
    # observations, with HEBO's GP settings (Matern-3/2 ARD, log-normal noise, irrelevant features).
    "bo-hebo": dict(prior="gp_hyper", num_features=6, min_features=1, seq_len=128, split="uniform",
                    batch_size=32, steps=6000, lr=5e-4, warmup_steps=300, d_model=128, num_layers=4,
                    num_heads=4, d_ff=256, num_buckets=1000, border_samples=200_000, checkpoint_every=1000,
                    keep_checkpoints=1, log_every=50,
                    prior_defaults={"gp_hyper": {"kernel": "matern32", "noise_prior": "lognormal",
                                                 "irrelevant_feature_p": 0.3}}),
    "cls-tiny": dict(prior="scm", num_features=10, min_features=1, seq_len=192, split="uniform",
                     batch_size=32, steps=2500, lr=1e-3, warmup_steps=100, d_model=64, num_layers=3,
                     num_heads=4, d_ff=128, max_classes=10, checkpoint_every=500, keep_checkpoints=1,
                     log_every=25, prior_defaults={"scm": {"missing_rate": 0.02}}),
    # The default classifier (experiments/tabular): TabPFN v1's prior bag with up to 100 features
    # (log-uniform counts: uniform ones left a model on the class-frequency plateau longer) and 10
    # classes; 2,900 steps of 256-row datasets, then 300 of 1,024 rows. About 90 minutes on the 2-core CPU.
    "cls-small": dict(prior="tabpfn_v1_mix", num_features=100, min_features=1, feature_count_dist="loguniform",
                      seq_len=256, split="uniform", batch_size=32, stages=((2900, 1024, 8),), steps=3200, lr=1e-3,
                      warmup_steps=200, min_lr_ratio=0.05, d_model=128, num_layers=4, num_heads=4, d_ff=256,
                      max_classes=10, checkpoint_every=100, keep_checkpoints=1, log_every=25,
                      prior_defaults={"tabpfn_v1_mix": {"missing_rate": 0.02}}),
    # TabPFN v1's size (d=512, 12 layers, up to 1,024 rows) for a GPU, with cls-small's feature counts and
    # length curriculum. Not yet run on one, so its steps are a guess at a 25 GPU-minute budget, to be
    # set from benchmarks/train_throughput.py.
    "cls-base": dict(prior="tabpfn_v1_mix", num_features=100, min_features=1, feature_count_dist="loguniform",
                     seq_len=256, split="uniform", batch_size=128, stages=((8000, 1024, 64),), steps=9000, lr=3e-4,
                     warmup_steps=500, min_lr_ratio=0.05, d_model=512, num_layers=12, num_heads=8, d_ff=1024,
                     max_classes=10, compute_dtype="bfloat16", checkpoint_every=500, keep_checkpoints=1,
                     log_every=50, prior_defaults={"tabpfn_v1_mix": {"missing_rate": 0.02}}),
    # A regressor for real tables: the tabular regression prior bag (BNN, GP with hyperpriors, SCM
    # targets), up to 50 features drawn log-uniformly (uniform counts kept a first run on the
    # marginal's plateau), 2,000 steps of 256-row datasets, then 200 of 1,024 rows; about 50 minutes
    # on the 2-core CPU.
    "reg-small": dict(prior="tabular_regression_mix", num_features=50, min_features=1,
                      feature_count_dist="loguniform", seq_len=256, split="uniform", batch_size=32,
                      stages=((2000, 1024, 8),), steps=2200, lr=1e-3, warmup_steps=200, min_lr_ratio=0.05,
                      d_model=128, num_layers=4, num_heads=4, d_ff=256, num_buckets=1000, border_samples=200_000,
                      checkpoint_every=100, keep_checkpoints=1, log_every=25),
    # The PFN paper's experiments (experiments/gp_mimicry, gp_hyperprior, bnn_vs_mcmc). The -cpu
    # presets train in 15 to 25 minutes on the 2-core CPU and are shipped under their own names;
    # the -gpu presets are their GPU scale.
    "gp-mimicry-cpu": dict(prior="gp", num_features=5, seq_len=200, split="loguniform", batch_size=32,
                           steps=3000, lr=1e-3, warmup_steps=250, d_model=128, num_layers=4, num_heads=4,
                           d_ff=256, num_buckets=1000, border_samples=200_000, checkpoint_every=500,
                           keep_checkpoints=1, log_every=50,
                           evals=({"type": "held_out", "every": 500, "num_datasets": 128,
                                   "context_sizes": (2, 10, 50, 199)},)),
    "gp-mimicry-gpu": dict(prior="gp", num_features=5, seq_len=1000, split="loguniform", batch_size=64,
                           steps=12_000, lr=3e-4, warmup_steps=3000, d_model=512, num_layers=6, num_heads=8,
                           num_buckets=1000, border_samples=1_000_000, compute_dtype="bfloat16",
                           checkpoint_every=2000, keep_checkpoints=1, log_every=100,
                           evals=({"type": "held_out", "every": 2000, "num_datasets": 128,
                                   "context_sizes": (2, 10, 100, 999)},)),
    "gp-hyper-cpu": dict(prior="gp_hyper", num_features=5, seq_len=100, split="uniform", batch_size=32,
                         steps=3000, lr=1e-3, warmup_steps=250, d_model=128, num_layers=4, num_heads=4,
                         d_ff=256, num_buckets=1000, border_samples=200_000, checkpoint_every=500,
                         keep_checkpoints=1, log_every=50),
    "gp-hyper-gpu": dict(prior="gp_hyper", num_features=5, seq_len=100, split="uniform", batch_size=256,
                         steps=20_000, lr=3e-4, warmup_steps=2000, d_model=512, num_layers=6, num_heads=8,
                         num_buckets=1000, border_samples=1_000_000, compute_dtype="bfloat16",
                         checkpoint_every=2000, keep_checkpoints=1, log_every=100),
    # Few-shot image classification (experiments/fewshot): tasks of up to 10 classes of random
    # pen-stroke glyphs, 8x8 pixels as 64 features, up to 127 support images. The steps are an
    # estimate of 60 minutes on the 2-core CPU.
    "fewshot-cpu": dict(prior="strokes", num_features=64, seq_len=128, split="uniform", batch_size=32,
                        steps=6000, lr=1e-3, warmup_steps=200, min_lr_ratio=0.05, d_model=128, num_layers=4,
                        num_heads=4, d_ff=256, max_classes=10, checkpoint_every=250, keep_checkpoints=1,
                        log_every=25),
    "bnn-small-cpu": dict(prior="bnn_binary", num_features=3, seq_len=128, split="uniform", batch_size=32,
                          steps=3000, lr=1e-3, warmup_steps=150, d_model=128, num_layers=4, num_heads=4,
                          d_ff=256, max_classes=2, checkpoint_every=500, keep_checkpoints=1, log_every=50,
                          prior_defaults={"bnn_binary": {"hidden": 5}}),
    "bnn-big-cpu": dict(prior="bnn_binary", num_features=8, seq_len=128, split="uniform", batch_size=32,
                        steps=3000, lr=1e-3, warmup_steps=150, d_model=128, num_layers=4, num_heads=4,
                        d_ff=256, max_classes=2, checkpoint_every=500, keep_checkpoints=1, log_every=50,
                        prior_defaults={"bnn_binary": {"hidden": 64}}),
}
for _size in ("small", "big"):
    PRESETS[f"bnn-{_size}-gpu"] = {**PRESETS[f"bnn-{_size}-cpu"], "batch_size": 256, "steps": 20_000, "lr": 3e-4,
                                   "warmup_steps": 2000, "d_model": 512, "num_layers": 6, "num_heads": 8,
                                   "d_ff": None, "compute_dtype": "bfloat16", "checkpoint_every": 2000}


# The preset a prior trains with when none is named, by the task of its data.
DEFAULT_PRESETS = {"regression": "tiny", "classification": "tiny-cls"}


def default_preset(prior: Any) -> str:
    """The laptop-sized preset for a prior (a registered name, ``module:Class`` or an instance):
    ``tiny`` for regression, ``tiny-cls`` for classification."""
    from pfnjax.priors import get_prior

    task = get_prior(prior).task if isinstance(prior, str) else prior.task
    return DEFAULT_PRESETS.get(task, "tiny")


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with ``overrides`` (flat aliases, see :mod:`pfnjax.config`) applied;
    ``None`` values are ignored. ``prior`` may be a registered name, ``module:Class`` or a prior
    instance; the preset's settings for a prior (``prior_defaults``) apply to a prior of that name.
    With ``model=NAME`` the preset's model settings that architecture lacks are left out."""
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        raise ValueError(f"unknown preset {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                         f"choose one of {sorted(PRESETS)}")
    fields = dict(PRESETS[name])
    prior_defaults = fields.pop("prior_defaults", {})
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "model" in overrides:
        # a preset sizes the architectures it knows: its settings that the chosen architecture does
        # not have are left out (the caller's own settings are still checked)
        from pfnjax.config import aliases
        from pfnjax.model import model_class

        known = {f.name for f in dataclasses.fields(model_class(overrides["model"]))}
        table = aliases()
        fields = {k: v for k, v in fields.items()
                  if not (k in table and table[k].section == "model" and table[k].field not in known)}
    fields.update(overrides)
    if overrides.get("warmup_steps") is None and fields.get("warmup_steps", 0) > fields.get("steps", 1):
        fields["warmup_steps"] = fields["steps"] // 10  # a shortened run keeps a proportional warmup
    prior = fields.get("prior", TrainConfig().prior.name)
    if isinstance(prior, str):
        fields["prior_kwargs"] = {**prior_defaults.get(prior, {}), **fields.get("prior_kwargs", {})}
    elif fields.get("prior_kwargs"):
        raise ValueError("prior_kwargs cannot be combined with a prior instance: set its fields on the instance")
    return TrainConfig.from_flat(**fields)


__all__ = ["DEFAULT_PRESETS", "PRESETS", "default_preset", "preset_config"]
