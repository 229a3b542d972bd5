"""The extension platform as a researcher meets it: an architecture and a prior of one's own, priors
that say what they are, runs that never import code their files name, resuming with other
settings, and the errors and help a new user sees."""

import dataclasses
import json
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import pfnjax
from pfnjax.cli import main
from pfnjax.model import ModelConfigBase, PFNModel, register_model
from pfnjax.predict import PFN, _decode_jit
from pfnjax.priors import get_prior, gp, prior_info
from conftest import env_without_xla_flags


# --------------------------------------------------------------------------- an architecture of one's own


@register_model("test_pooled")
@dataclasses.dataclass(frozen=True)
class PooledConfig(ModelConfigBase):
    """A toy architecture registered from this file alone: the masked mean of the context rows'
    embeddings, read out per query (no attention, no cache of its own)."""

    width: int = 16

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")

    def build(self, io, rngs):
        return Pooled(self, io, rngs)


class Pooled(PFNModel):
    def __init__(self, cfg, io, rngs):
        self.cfg, self.io = cfg, io
        self.embed = nnx.Linear(io.max_features + 1, cfg.width, rngs=rngs)
        self.out = nnx.Linear(io.max_features + cfg.width, io.num_outputs, rngs=rngs)

    def __call__(self, x, y, single_eval_pos, num_features):
        x = jnp.nan_to_num(x)
        context = (jnp.arange(x.shape[1]) < single_eval_pos[:, None])[..., None]
        h = jnp.tanh(self.embed(jnp.concatenate([x, y[..., None].astype(x.dtype)], -1)))
        pooled = (h * context).sum(1, keepdims=True) / context.sum(1, keepdims=True)
        return self.out(jnp.concatenate([x, jnp.broadcast_to(pooled, x.shape[:2] + pooled.shape[-1:])], -1))


def test_an_architecture_registered_in_a_test_file_trains_saves_and_loads(tmp_path):
    cfg = pfnjax.preset_config("test", model="test_pooled", width=8, steps=80, lr=3e-2, batch_size=16, log_every=10)
    assert cfg.model == PooledConfig(width=8) and cfg.to_dict()["model"] == {"name": "test_pooled", "width": 8}
    with pytest.raises(ValueError, match="has no setting 'd_model'"):
        pfnjax.preset_config("test", model="test_pooled", d_model=8)  # the caller's own settings are checked
    result = pfnjax.train(cfg, tmp_path / "run", progress=False)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-3:]) < losses[0] - 0.15, losses  # it learns
    pfn = pfnjax.load(tmp_path / "run")
    assert pfn.model_config == PooledConfig(width=8)
    x = np.random.default_rng(0).uniform(size=(30, 2)).astype(np.float32)
    y = np.sin(4 * x[:, 0]).astype(np.float32)
    cached = np.asarray(pfn.logits(x[:20], y[:20], x[20:]))
    np.testing.assert_allclose(cached, np.asarray(pfn.logits_uncached(x[:20], y[:20], x[20:])), atol=1e-5)
    np.testing.assert_array_equal(cached, np.asarray(PFN.from_train_result(result).logits(x[:20], y[:20], x[20:])))
    # the masked definition: a query's logits depend on the context, not on the other queries
    moved = np.asarray(pfn.logits(x[:20], y[:20], np.concatenate([x[20:21], x[25:] + 3.0])))
    np.testing.assert_allclose(moved[0], cached[0], atol=1e-5)
    assert np.abs(np.asarray(pfn.logits(x[:20], y[:20] + 1.0, x[20:])) - cached).max() > 1e-3


# --------------------------------------------------------------------------- priors say what they are


def test_a_run_without_missing_values_refuses_nan(tmp_path):
    """An SCM prior with missing_rate=0.0 makes no NaN: its model refuses NaN inputs (before, the key
    ``missing_rate`` in the spec flagged it as trained with missing values), and the estimators'
    allow_nan tag follows; the shipped cls-tiny (missing_rate 0.02) is the positive control."""
    run = tmp_path / "scm0"
    assert main(["train", "--prior", "scm", "--preset", "test", "--steps", "6", "--prior-kwargs",
                 '{"missing_rate": 0.0}', "--out", str(run), "--no-progress"]) == 0
    pfn = pfnjax.load(run)
    assert not pfn.trained_with_missing
    assert json.loads((run / "config.json").read_text())["prior_info"]["makes_missing"] is False
    x = np.random.default_rng(0).normal(size=(12, 2))
    y = np.arange(12) % 2
    x_nan = x[8:].copy()
    x_nan[0, 1] = np.nan
    with pytest.raises(ValueError, match="not trained with missing values"):
        pfn.predict(x[:8], y[:8], x_nan)
    from pfnjax.sklearn import PFNClassifier

    assert not PFNClassifier(model=pfn).__sklearn_tags__().input_tags.allow_nan
    control = pfnjax.load("cls-tiny")
    assert control.trained_with_missing and PFNClassifier(model=control).__sklearn_tags__().input_tags.allow_nan
    assert np.isfinite(np.asarray(control.predict(x[:8], y[:8], x_nan).probs)).all()
    # what the priors themselves say
    assert not get_prior("scm", missing_rate=0.0).makes_missing and get_prior("scm", missing_rate=0.1).makes_missing
    assert get_prior("tabpfn_v1_mix", missing_rate=0.02).makes_missing
    assert not get_prior("tabular_regression_mix", missing_rate=0.0).makes_missing
    assert prior_info(get_prior("gp")) == {"task": "regression", "makes_missing": False, "input_range": [0.0, 1.0],
                                           "exact_predictive": True}


def test_exact_predictive_is_the_gp_oracle_and_honours_the_context_mask():
    prior = get_prior("gp", lengthscale=0.4, noise=0.05)
    batch = pfnjax.sample_batch(prior, jax.random.key(2), pfnjax.BatchShape(1, 30, 2))
    x, y = batch.x[0], batch.y[0]
    mean, var = prior.exact_predictive(x[:12], y[:12], x[20:])
    ref_mean, ref_var = gp.exact_posterior(x[:12], y[:12], x[20:], prior.hyper())
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, ref_var, rtol=1e-5)
    # masked rows of a padded context are ignored: equal to conditioning on the first 12 rows only
    m_mean, m_var = prior.exact_predictive(x[:20], y[:20], x[20:], ctx_mask=jnp.arange(20) < 12)
    np.testing.assert_allclose(m_mean, ref_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m_var, ref_var, rtol=1e-4, atol=1e-6)
    full_mean, _ = prior.exact_predictive(x[:20], y[:20], x[20:])
    assert np.abs(np.asarray(full_mean - ref_mean)).max() > 1e-3  # the mask matters
    assert not callable(getattr(get_prior("gp_hyper"), "exact_predictive", None))  # unknown hyperparameters


def test_priors_are_discovered_without_a_hand_kept_import_list():
    import pkgutil
    import pfnjax.priors as package

    source = open(package.__file__).read()
    assert "from pfnjax.priors import gp" not in source and "discover_priors()" in source
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert {f"pfnjax.priors.{m}" for m in modules} <= set(sys.modules)
    assert {"gp", "gp_hyper", "linear", "bnn", "bnn_binary", "scm", "scm_regression", "tabpfn_v1_mix",
            "tabular_regression_mix", "strokes"} == set(pfnjax.priors.prior_names()) - {"doc_sine", "doc_coin", "sine_abc"}


# --------------------------------------------------------------------------- a prior in a file of one's own

PRIOR_MODULE = '''
import dataclasses, pathlib
import jax, jax.numpy as jnp
from pfnjax.priors import register_prior

pathlib.Path(__file__).with_suffix(".imported").write_text("imported")  # a side effect to detect imports

@register_prior("sine_abc")
@dataclasses.dataclass(frozen=True)
class SineABC:
    frequency: float = 5.0
    task: str = dataclasses.field(default="regression", init=False)

    def sample_dataset(self, key, seq_len, max_features, num_features, single_eval_pos):
        k_x, k_p = jax.random.split(key)
        x = jax.random.uniform(k_x, (seq_len, max_features))
        return x, jnp.sin(self.frequency * x[:, 0] + jax.random.uniform(k_p, (), maxval=6.28))
'''


def test_a_prior_in_a_new_file_trains_and_evaluates_from_the_cli(tmp_path, monkeypatch, capsys):
    (tmp_path / "sine_abc_prior.py").write_text(PRIOR_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    assert main(["train", "--import", "sine_abc_prior", "--prior", "sine_abc", "--prior-kwargs", '{"frequency": 3.0}',
                 "--preset", "test", "--steps", "4", "--out", str(run), "--no-progress"]) == 0
    assert main(["eval", str(run), "--import", "sine_abc_prior", "--num-datasets", "8", "--context-sizes", "2,5"]) == 0
    out = capsys.readouterr().out
    assert "prior=SineABC" in out and "| 5 |" in out
    spec = json.loads((run / "config.json").read_text())["prior"]
    assert spec == {"class": "SineABC", "module": "sine_abc_prior", "frequency": 3.0}
    # module:Class names the class directly
    assert main(["train", "--prior", "sine_abc_prior:SineABC", "--preset", "test", "--steps", "2",
                 "--out", str(tmp_path / "run2"), "--no-progress"]) == 0


def test_a_run_naming_an_unregistered_module_is_refused_and_the_module_is_not_imported(tmp_path):
    """A run directory may come from someone else: loading and evaluating it never imports the module
    its spec names. In a fresh interpreter, without --import, eval fails with a clear error and the
    module's import side effect never happens; the model itself still loads for prediction."""
    (tmp_path / "sine_abc_prior.py").write_text(PRIOR_MODULE)
    run = tmp_path / "run"
    env = env_without_xla_flags(PYTHONPATH=str(tmp_path))
    subprocess.run([sys.executable, "-m", "pfnjax.cli", "train", "--import", "sine_abc_prior", "--prior", "sine_abc",
                    "--preset", "test", "--steps", "2", "--out", str(run), "--no-progress"],
                   check=True, env=env, capture_output=True, timeout=300)
    marker = tmp_path / "sine_abc_prior.imported"
    marker.unlink()
    out = subprocess.run([sys.executable, "-m", "pfnjax.cli", "eval", str(run)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "unknown prior class 'SineABC' from module 'sine_abc_prior'" in out.stderr
    assert "--import sine_abc_prior" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists()
    code = f"import pfnjax, sys; pfn = pfnjax.load({str(run)!r}); print(pfn.prior_spec['class'], 'sine_abc_prior' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert loaded.stdout.split() == ["SineABC", "False"] and not marker.exists(), loaded.stderr


# --------------------------------------------------------------------------- resuming with other settings


def test_resume_compares_configs_first_names_the_fields_and_may_raise_steps(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--prior", "gp", "--preset", "test", "--out", str(run), "--no-progress"]
    assert main(args + ["--steps", "8"]) == 0
    assert main(args + ["--steps", "12"]) == 0  # a finished run extended
    assert pfnjax.checkpoint.latest_step(run) == 12
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 8, 10, 12]
    capsys.readouterr()
    assert main(args + ["--steps", "12", "--d-model", "64", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "model.d_model: 32 -> 64" in err and "optim.lr: 0.001 -> 0.01" in err
    assert "Event loop is closed" not in err and "Traceback" not in err
    assert main(args + ["--steps", "6"]) == 2
    assert "beyond --steps 6" in capsys.readouterr().err


# --------------------------------------------------------------------------- what a new user sees


def test_help_shows_the_presets_defaults_with_readable_metavars(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "CFG__" not in text and "default 64" in text and "INT" in text and "token width" in text
    assert "preset 'tiny'" in text
    with pytest.raises(SystemExit):
        main(["train", "--preset", "test", "--help"])
    text = capsys.readouterr().out
    assert "default 32" in text and "preset 'test'" in text
    with pytest.raises(SystemExit):
        main(["train", "--preset", "gp-mimicry-cpu", "--help"])  # a preset with evaluators: shown as JSON
    assert '"type": "held_out"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "comma-separated context sizes" in text and "--import" in text


def test_misspelt_names_get_suggestions():
    with pytest.raises(ValueError, match=r"no setting\(s\) \['lenghtscale'\].*'lengthscale'"):
        get_prior("gp", lenghtscale=0.3)
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        pfnjax.preset_config("tiny", prior="linaer")
    with pytest.raises(pfnjax.CheckpointError, match="Did you mean 'reg-small'"):
        pfnjax.load("reg-smal")
    assert main(["train", "--prior", "gp", "--prior-kwargs", '{"lenghtscale": 0.3}', "--out", "/nonexistent/x"]) == 2


def test_warmup_compiles_the_shapes_so_later_calls_do_not():
    from pfnjax.model import ClassicConfig, ModelIO
    from pfnjax.predict import compiled_sizes

    pfn = PFN.init(ClassicConfig(d_model=16, num_layers=1, num_heads=2), ModelIO(3, 12), seed=0)
    assert compiled_sizes(10) == (16, 16) and compiled_sizes(1000) == (1024, 1024)
    assert compiled_sizes(3000, chunk_size=1024)[1] == 1024
    shapes = pfn.warmup(context_sizes=(20,), query_counts=(10, 1000), num_features=3)
    assert shapes == [(32, 16), (32, 1024)]
    before = _decode_jit._cache_size()
    x = np.random.default_rng(0).normal(size=(1020, 3)).astype(np.float32)
    for m in (10, 1000, 700):  # 700 queries: a 1024-row chunk as well
        pfn.logits(x[:20], x[:20, 0], x[20:20 + m])
    assert _decode_jit._cache_size() == before


def test_repr_is_a_summary():
    text = repr(pfnjax.load("cls-small"))
    assert len(text) < 500 and "model='classic'" in text and "0.58M params" in text and "ClassHead" in text


def test_a_specialised_model_warns_about_inputs_unlike_its_training_data():
    pfn = pfnjax.load("gp-mimicry-cpu")  # 5-D inputs in [0, 1]
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(30, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pfn.predict(x[:20], np.sin(x[:20, 0]), x[20:])  # in its domain: silent
    with pytest.warns(UserWarning, match=r"trained on inputs in \[0, 1\]"):
        z = rng.normal(size=(30, 5))
        pfn.predict(z[:20], np.sin(z[:20, 0]), z[20:])
    with pytest.warns(UserWarning, match="trained only on datasets with exactly 5 features"):
        pfn.predict(x[:20, :2], np.sin(x[:20, 0]), x[20:, :2])


def test_the_light_extra_brings_plotting_without_the_boosting_libraries():
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(pfnjax.__file__).parents[1] / "setup.cfg")
    extras = {k: v.split() for k, v in cfg["options.extras_require"].items()}
    names = {line.split(">")[0].split("=")[0] for line in extras["notebook"]}
    assert {"matplotlib", "pandas", "scikit-learn"} <= names and not names & {"xgboost-cpu", "catboost", "lightgbm"}
