"""Nested run configuration: round trips, flat aliases, generated CLI flags, legacy runs, and
priors rebuilt from their saved spec."""

import argparse
import dataclasses
import json

import jax
import numpy as np
import pytest

from pfnjax.config import ALIASES, SECTIONS, OptimConfig, TrainConfig, add_config_flags, config_overrides
from pfnjax.presets import PRESETS, preset_config
from pfnjax.priors import get_prior, prior_names, sample_batch
from pfnjax.priors.base import prior_from_spec, prior_spec
from pfnjax.types import BatchShape


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_round_trips_through_json(preset):
    cfg = preset_config(preset)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_round_trip_with_tuple_valued_prior_kwargs():
    cfg = preset_config("test", prior="bnn", prior_kwargs={"hidden_range": (4, 9), "activations": ("relu",)})
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    # ... and the prior built from it holds tuples again (hashable, so it is a static jit argument)
    from pfnjax.priors.from_config import build_prior

    prior = build_prior(cfg.prior)
    assert prior.hidden_range == (4, 9) and hash(prior) == hash(get_prior("bnn", hidden_range=(4, 9),
                                                                          activations=("relu",)))


def test_aliases_address_nested_fields():
    cfg = TrainConfig.from_flat(lr=3e-4, d_model=64, steps=50, warmup_steps=5, prior="linear", seq_len=40)
    assert (cfg.optim.lr, cfg.model.d_model, cfg.optim.steps, cfg.prior.name, cfg.data.seq_len) == (
        3e-4, 64, 50, "linear", 40)
    assert cfg.replace(optim=OptimConfig(steps=7, warmup_steps=0)).optim.steps == 7
    assert cfg.flat()["d_model"] == 64
    with pytest.raises(ValueError, match="unknown TrainConfig field 'learning_rate'"):
        cfg.replace(learning_rate=1.0)
    # every field of every section has exactly one alias
    n_fields = sum(len(dataclasses.fields(c)) for c in SECTIONS.values()) + 1
    assert len(ALIASES) == n_fields


def test_legacy_flat_dict_loads_as_nested():
    """Runs saved by pfnjax 0.1 stored the config flat."""
    legacy = {"prior": "scm", "prior_kwargs": {"missing_rate": 0.02}, "num_features": 10, "seq_len": 192,
              "steps": 2500, "lr": 0.001, "warmup_steps": 100, "d_model": 64, "max_classes": 10, "log_every": 25}
    cfg = TrainConfig.from_dict(legacy)
    assert cfg.prior.kwargs == {"missing_rate": 0.02} and cfg.data.seq_len == 192 and cfg.loop.log_every == 25


@pytest.mark.parametrize("bad, match", [
    (dict(lr=0.0), "lr must be > 0"),
    (dict(seq_len=1), "seq_len must be >= 2"),
    (dict(min_features=9, num_features=3), "min_features"),
    (dict(attention_impl="flash"), "attention_impl"),
    (dict(steps=10, warmup_steps=20), "warmup_steps"),
    (dict(batch_size=True), "positive int"),
    (dict(eval_every=-1), "eval_every"),
    (dict(feature_count_dist="normal"), "feature_count_dist"),
    (dict(stages=((10, 64, 8), (5, 128, 4))), "increasing from_step"),
    (dict(stages=((10, 1, 8),)), "seq_len >= 2"),
    (dict(stages=((10, 64),)), "triples"),
])
def test_invalid_values_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_flat(**bad)


def test_unknown_saved_fields_raise():
    data = preset_config("test").to_dict()
    data["optim"]["momentum"] = 0.9
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig.from_dict(data)


def test_cli_flags_are_generated_from_every_field():
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for alias, (section, field) in ALIASES.items():
        if section:
            assert f"--{section}.{field}" in flags
    assert {"--lr", "--optim.lr", "--prior", "--prior-kwargs", "--attention", "--eval-every"} <= flags
    args = parser.parse_args(["--optim.lr", "0.01", "--d-model", "48", "--prior-kwargs", '{"noise": 0.1}',
                              "--eval-context-sizes", "[3, 7]", "--attention", "xla"])
    overrides = config_overrides(args)
    assert overrides == {"lr": 0.01, "d_model": 48, "prior_kwargs": {"noise": 0.1}, "eval_context_sizes": [3, 7],
                         "attention_impl": "xla"}
    cfg = preset_config("test", **overrides)
    assert cfg.optim.lr == 0.01 and cfg.model.attention_impl == "xla" and cfg.loop.eval_context_sizes == (3, 7)
    with pytest.raises(SystemExit):
        parser.parse_args(["--split", "random"])  # choices come from the Literal annotation


# tabular_regression_mix is a MixturePrior of tested components, as tabpfn_v1_mix (tested) is; its
# compile would cost the suite most of a minute.
@pytest.mark.parametrize("name", sorted(set(prior_names()) - {"tabular_regression_mix"}))
def test_every_prior_is_rebuilt_from_its_saved_spec(name):
    """The saved spec (JSON) rebuilds an equal (same class, same fields) prior; the regression
    priors also draw the same datasets (the tabular ones cost half a minute to compile, and equal
    frozen configs run the same code)."""
    prior = get_prior(name)
    rebuilt = prior_from_spec(json.loads(json.dumps(prior_spec(prior))))
    assert rebuilt == prior and hash(rebuilt) == hash(prior)
    if prior.task != "regression":
        return
    shape = BatchShape(3, 12, 2)
    a = sample_batch(prior, jax.random.key(5), shape)
    b = sample_batch(rebuilt, jax.random.key(5), shape)
    np.testing.assert_array_equal(np.asarray(a.y), np.asarray(b.y))


def test_spec_of_an_unregistered_prior_raises():
    @dataclasses.dataclass(frozen=True)
    class Homemade:
        task: str = "regression"

    with pytest.raises(ValueError, match="register_prior"):
        prior_spec(Homemade())
