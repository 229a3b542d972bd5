"""Saved runs: what training writes is what inference reads back, exactly; in-training
evaluations land in metrics.jsonl; runs of pfnjax 0.1 still load."""

import json

import chex
import jax
import numpy as np
import pytest

import pfnjax
from pfnjax import checkpoint as ckpt
from pfnjax.evaluate import HeldOutEvaluator, held_out_source
from pfnjax.heads import BarHead, ClassHead
from pfnjax.runs import LEGACY_FORMAT, RUN_FORMAT, read_run


@pytest.fixture(scope="module")
def gp_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gp-run")
    cfg = pfnjax.preset_config("test", steps=8, eval_every=4, eval_datasets=12, eval_context_sizes=(2, 9),
                               prior_kwargs={"lengthscale": 0.3})
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
    assert set(saved) == {"format", "train", "model", "head", "prior"} and saved["head"]["kind"] == "bar"


def test_checkpoint_state_has_no_head_arrays(gp_run):
    """The head's arrays live in the metadata; the state is step, params, optimizer state and key."""
    _, run_dir, _ = gp_run
    import orbax.checkpoint as ocp

    tree = ocp.PyTreeCheckpointer().metadata(ckpt.checkpoint_dir(run_dir) / "8" / "state").item_metadata.tree
    assert sorted(tree) == ["opt_state", "params", "rng", "step"]


def test_in_training_evaluations_match_a_fresh_evaluator(gp_run):
    """metrics.jsonl holds the evaluator's metrics at steps 4 and 8; re-running the same evaluator on
    the loaded step-8 params reproduces them, and the GP oracle gap is the NLL minus the exact NLL."""
    cfg, run_dir, result = gp_run
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if "eval" in line]
    assert [e["step"] for e in evals] == [4, 8] and evals == result.evaluations
    pfn = pfnjax.load(run_dir)
    prior, key, sampler = held_out_source(pfn)
    evaluator = HeldOutEvaluator.for_pfn(pfn, prior, key, context_sizes=(2, 9), num_datasets=12, num_queries=50,
                                         num_features_sampler=sampler)
    fresh = evaluator.run(pfn.params)
    assert fresh == pytest.approx(evals[-1]["eval"], rel=1e-5)
    rows = evaluator.rows(pfn.params)
    assert fresh["gap"] == pytest.approx(np.mean([r.pfn_nll - r.exact_nll for r in rows]), rel=1e-6)
    assert fresh["nll@9"] < fresh["nll@2"] + 0.5  # more context never makes it much worse


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
