"""Nested run configuration: round trips, flat aliases, generated CLI flags, legacy runs, and
priors rebuilt from their saved spec."""

import argparse
import dataclasses
import json

import jax
import numpy as np
import pytest

from pfnjax.config import (
    PLAIN_SECTIONS,
    SECTIONS,
    OptimConfig,
    TrainConfig,
    add_config_flags,
    aliases,
    config_differences,
    config_overrides,
)
from pfnjax.heads import HEADS
from pfnjax.model import MODELS
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
    # every field of every plain section, of every registered architecture and of every head's
    # settings has one alias, and each alias names one field
    table = aliases()
    wanted = {("", "seed"), ("model", "name")}
    wanted |= {(s, f.name) for s in PLAIN_SECTIONS for f in dataclasses.fields(SECTIONS[s])}
    wanted |= {("model", f.name) for cls in MODELS.values() for f in dataclasses.fields(cls)}
    wanted |= {("head", f.name) for cls in HEADS.values() if cls.Config for f in dataclasses.fields(cls.Config)}
    assert {(a.section, a.field) for a in table.values()} == wanted
    assert len(table) == len(wanted)


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
    (dict(evals=[{"type": "held_out", "every": 0}]), "every must be a positive int"),
    (dict(evals=[{"type": "held_outt", "every": 5}]), "unknown evaluator type 'held_outt'"),
    (dict(evals=[{"type": "held_out", "every": 5, "datasets": 3}]), r"no setting\(s\) \['datasets'\]"),
    (dict(prior="linaer"), "did you mean 'linear'"),
    (dict(prior="gp", prior_kwargs={"lenghtscale": 0.3}), r"no setting\(s\) \['lenghtscale'\].*lengthscale"),
    (dict(model="transformerr"), "unknown model 'transformerr'"),
    (dict(d_model=30, num_heads=4), "divisible"),
    (dict(num_buckets=0), "num_buckets must be a positive int"),
    (dict(split_sharing="batch"), "split_sharing"),
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
    for where in aliases().values():
        if where.section and where.field != "name" and where.field != "spec":
            dotted = f"{where.kind}.{where.field}" if where.section == "head" else where.field
            assert f"--{where.section}.{dotted}" in flags
    assert {"--lr", "--optim.lr", "--prior", "--prior-kwargs", "--attention", "--evals", "--model",
            "--head.bar.num_buckets", "--num-buckets"} <= flags
    evals = '[{"type": "held_out", "every": 5, "context_sizes": [3, 7]}]'
    args = parser.parse_args(["--optim.lr", "0.01", "--d-model", "48", "--prior-kwargs", '{"noise": 0.1}',
                              "--evals", evals, "--attention", "xla"])
    overrides = config_overrides(args)
    assert overrides == {"lr": 0.01, "d_model": 48, "prior_kwargs": {"noise": 0.1}, "evals": json.loads(evals),
                         "attention_impl": "xla"}
    cfg = preset_config("test", **overrides)
    assert cfg.optim.lr == 0.01 and cfg.model.attention_impl == "xla"
    assert cfg.loop.evals[0].settings == {"context_sizes": [3, 7]} and cfg.loop.evals[0].every == 5
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


def test_legacy_loop_and_head_sections_load():
    """Runs saved before evaluators were a list, and before each head owned its settings."""
    data = preset_config("test").to_dict()
    data["loop"] = {"checkpoint_every": 10, "log_every": 5, "keep_checkpoints": 1, "eval_every": 4,
                    "eval_datasets": 12, "eval_context_sizes": [2, 9]}
    data["head"] = {"num_buckets": 50, "border_samples": 5000, "max_classes": 7}
    cfg = TrainConfig.from_dict(data)
    entry, = cfg.loop.evals
    assert (entry.type, entry.every, entry.settings) == ("held_out", 4, {"num_datasets": 12, "context_sizes": [2, 9]})
    assert cfg.head.for_kind("bar").num_buckets == 50 and cfg.head.for_kind("class").max_classes == 7
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_architecture_is_selected_by_name_and_validated_at_config_time():
    cfg = preset_config("test", model="classic", d_model=48)
    assert cfg.model.name == "classic" and cfg.model.d_model == 48 and cfg.to_dict()["model"]["name"] == "classic"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        preset_config("test", model="nope")


def test_config_differences_name_the_fields():
    a, b = preset_config("test"), preset_config("test", steps=45, d_model=64)
    assert config_differences(a, b) == ["model.d_model: 32 -> 64", "optim.steps: 20 -> 45"]
    assert config_differences(a, a) == []


def test_prior_instances_and_module_class_names_are_accepted(tmp_path, monkeypatch):
    """A user's prior instance, or ``module:Class``, in place of a registered name."""
    module = tmp_path / "my_sine_prior.py"
    module.write_text(
        "import dataclasses, jax, jax.numpy as jnp\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class SineXYZ:\n"
        "    amplitude: float = 1.0\n"
        "    task: str = dataclasses.field(default='regression', init=False)\n"
        "    def sample_dataset(self, key, seq_len, max_features, num_features, single_eval_pos):\n"
        "        x = jax.random.uniform(key, (seq_len, max_features))\n"
        "        return x, self.amplitude * jnp.sin(6 * x[:, 0])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = preset_config("test", prior="my_sine_prior:SineXYZ", prior_kwargs={"amplitude": 2.0})
    from pfnjax.priors.from_config import build_prior

    prior = build_prior(cfg.prior)
    assert type(prior).__name__ == "SineXYZ" and prior.amplitude == 2.0
    with pytest.raises(ValueError, match=r"no setting\(s\) \['amplitud'\]"):
        preset_config("test", prior="my_sine_prior:SineXYZ", prior_kwargs={"amplitud": 2.0})
    instance = type(prior)(amplitude=3.0)
    cfg2 = preset_config("test", prior=instance)
    assert build_prior(cfg2.prior) == instance and cfg2.prior.spec["module"] == "my_sine_prior"
    assert TrainConfig.from_dict(json.loads(cfg2.to_json())) == cfg2
