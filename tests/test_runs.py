"""Saved runs: what training writes is what inference reads back, exactly; in-training
evaluations land in metrics.jsonl; runs of pfnjax 0.1 still load."""

import json

import chex
import jax
import numpy as np
import pytest

import pfnjax
from pfnjax import checkpoint as ckpt
from pfnjax.evaluators import HeldOutEvaluator, held_out_source, make_predict_fn
from pfnjax.heads import BarHead, ClassHead
from pfnjax.runs import LEGACY_FORMAT, RUN_FORMAT, read_run


@pytest.fixture(scope="module")
def gp_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gp-run")
    cfg = pfnjax.preset_config("test", steps=8, prior_kwargs={"lengthscale": 0.3},
                               evals=[{"type": "held_out", "every": 4, "num_datasets": 12, "context_sizes": [2, 9]}])
    return cfg, run_dir, pfnjax.train(cfg, run_dir, progress=False)


def test_load_restores_exactly_what_was_trained(gp_run):
    cfg, run_dir, result = gp_run
    pfn = pfnjax.load(run_dir)
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, pfn.params), jax.tree.map(np.asarray, result.params))
    np.testing.assert_array_equal(np.asarray(pfn.borders), np.asarray(result.head.borders))
    assert pfn.train_config == cfg and pfn.model_config == result.model_config
    info = read_run(run_dir)
    assert info.format == RUN_FORMAT and info.prior() == pfnjax.get_prior("gp", lengthscale=0.3)
    saved = json.loads((run_dir / "config.json").read_text())
    assert set(saved) == {"format", "train", "model", "io", "head", "prior", "prior_info"}
    assert saved["head"]["kind"] == "bar" and saved["model"]["name"] == "classic"
    assert saved["prior_info"] == {"task": "regression", "makes_missing": False, "input_range": [0.0, 1.0],
                                   "exact_predictive": True}


def test_checkpoint_state_has_no_head_arrays(gp_run):
    """The head's arrays live in the metadata; the state is step, params, optimizer state, key and
    the averaged weights, which hold no array when the run does not average."""
    cfg, run_dir, _ = gp_run
    import orbax.checkpoint as ocp

    assert cfg.optim.averaging == "none"
    tree = ocp.PyTreeCheckpointer().metadata(ckpt.checkpoint_dir(run_dir) / "8" / "state").item_metadata.tree
    assert sorted(tree) == ["avg_params", "opt_state", "params", "rng", "step"]
    assert jax.tree.leaves(tree["avg_params"]) == []


def test_in_training_evaluations_match_a_fresh_evaluator(gp_run):
    """metrics.jsonl holds the evaluator's metrics at steps 4 and 8; re-running the same evaluator on
    the loaded step-8 params reproduces them, and its gap equals the PFN's NLL (from pfn.predict,
    dataset by dataset) minus the exact GP NLL (a float64 numpy posterior), both computed here."""
    cfg, run_dir, result = gp_run
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if "eval" in line]
    assert [e["step"] for e in evals] == [4, 8] and evals == result.evaluations
    pfn = pfnjax.load(run_dir)
    prior, key, sampler = held_out_source(pfn)
    evaluator = HeldOutEvaluator.for_pfn(pfn, prior, key, context_sizes=(2, 9), num_datasets=12, num_queries=50,
                                         num_features_sampler=sampler)
    fresh = evaluator.run(make_predict_fn(pfn.graphdef), pfn.params)
    assert fresh == pytest.approx(evals[-1]["eval"]["held_out"], rel=1e-5)
    data, hyper = evaluator.data, prior.hyper()
    gaps = []
    for n in (2, 9):
        for b in range(12):
            f = int(data.num_features[b])
            (x_c, y_c), (x_q, y_q) = data.context([b], n, f), data.queries([b], f)
            pfn_nll = -np.asarray(pfn.predict(x_c[0], y_c[0], x_q[0]).log_prob(y_q[0])).mean()
            xc, xq = x_c[0].astype(np.float64), x_q[0].astype(np.float64)
            k = lambda a, c: hyper.outputscale * np.exp(-0.5 * ((a[:, None] - c[None]) ** 2).sum(-1) / hyper.lengthscale**2)  # noqa: E731
            kcc = k(xc, xc) + hyper.noise * np.eye(n)
            mean = k(xq, xc) @ np.linalg.solve(kcc, y_c[0])
            var = hyper.outputscale + hyper.noise - np.einsum("ij,ji->i", k(xq, xc), np.linalg.solve(kcc, k(xc, xq)))
            exact = np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y_q[0] - mean) ** 2 / var)
            gaps.append(pfn_nll - exact)
    assert fresh["gap"] == pytest.approx(np.mean(gaps), abs=2e-3)
    # and the in-training gap is the one of an untrained-ish model: well above the oracle's
    assert fresh["gap"] > 0.1


def test_legacy_runs_load():
    """The shipped models were saved by pfnjax 0.1: flat config, borders inside the train state."""
    reg, cls = pfnjax.load("reg-tiny"), pfnjax.load("cls-tiny")
    assert read_run(pfnjax.predict.PRETRAINED_DIR / "reg-tiny").format == LEGACY_FORMAT
    assert isinstance(reg.head, BarHead) and reg.head.num_outputs == 500
    assert np.all(np.diff(np.asarray(reg.borders)) > 0)
    assert cls.head == ClassHead(10) and cls.trained_with_missing and not reg.trained_with_missing
    assert reg.train_config.optim.steps == 2500 and reg.train_config.prior.name == "bnn"


def test_missing_or_foreign_runs_raise(tmp_path):
    with pytest.raises(pfnjax.CheckpointError, match="does not exist"):
        pfnjax.load(tmp_path / "nope")
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(pfnjax.CheckpointError, match="no complete checkpoint"):
        pfnjax.load(tmp_path)
