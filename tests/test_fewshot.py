"""experiments/fewshot: its digit tasks follow the protocol, the prototypical network's logits are
its definition, and the --smoke run trains, evaluates every method and writes its results."""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load():
    sys.path.insert(0, str(EXPERIMENTS))
    spec = importlib.util.spec_from_file_location("fewshot_run", EXPERIMENTS / "fewshot" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_digit_tasks_follow_the_protocol():
    from sklearn.datasets import load_digits

    fs = _load()
    tasks = fs.digit_tasks(ways=5, shots=3, queries=4, count=50, seed=0)
    assert tasks.x_support.shape == (50, 15, 64) and tasks.x_query.shape == (50, 20, 64)
    digits = load_digits()
    for t in range(50):
        ys, yq = tasks.y_support[t], tasks.y_query[t]
        np.testing.assert_array_equal(ys, np.tile(np.arange(5), 3))  # class by class in turn, 3 shots
        assert np.bincount(yq, minlength=5).tolist() == [4] * 5
        rows_s, rows_q = tasks.support_rows[t], tasks.query_rows[t]
        assert not set(rows_s) & set(rows_q) and len(set(rows_q)) == 20  # disjoint, no repeats
        np.testing.assert_array_equal(tasks.x_support[t], digits.data[rows_s] / 16.0)
        # each label is one digit class throughout the task, five different ones
        classes = {label: set(digits.target[np.r_[rows_s[ys == label], rows_q[yq == label]]]) for label in range(5)}
        assert all(len(c) == 1 for c in classes.values()) and len(set.union(*classes.values())) == 5
    again = fs.digit_tasks(ways=5, shots=3, queries=4, count=50, seed=0)
    np.testing.assert_array_equal(again.x_query, tasks.x_query)


def test_protonet_logits_are_negative_squared_distances_to_class_means():
    fs = _load()
    params = fs.protonet_init(jax.random.key(0), 8, 64)
    rng = np.random.default_rng(0)
    xs, xq = rng.random((6, 64)).astype(np.float32), rng.random((4, 64)).astype(np.float32)
    ys = np.array([0, 1, 0, 1, 2, 2])
    logits = np.asarray(fs.protonet_logits(params, xs, ys, xq, ways=4))
    es, eq = np.asarray(fs.protonet_embed(params, xs)), np.asarray(fs.protonet_embed(params, xq))
    for c in range(3):
        proto = es[ys == c].mean(0)
        np.testing.assert_allclose(logits[:, c], -((eq - proto) ** 2).sum(1), rtol=1e-4, atol=1e-4)
    assert np.all(logits[:, 3] < -1e8)  # a class without support examples is never predicted


def test_fewshot_smoke_run(tmp_path):
    fs = _load()
    fs.main(["--smoke", "--retrain", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path), "--tasks", "10",
             "--methods", "pfn", "1nn", "logistic", "protonet"])
    records = json.loads((tmp_path / "results_smoke.json").read_text())["records"]
    assert set(records) == {"pfn", "1nn", "logistic", "protonet"}
    for method, by in records.items():
        assert set(by) == {"5x1", "5x5", "10x5"}
        assert all(0 <= r["accuracy"] <= 1 and r["tasks"] == 10 for r in by.values())
    # 1-NN on real digits is far above chance (0.2 for 5 ways) already at 5 shots
    assert records["1nn"]["5x5"]["accuracy"] > 0.8
    assert (tmp_path / "accuracy_smoke.png").exists() and (tmp_path / "sample_task_smoke.png").exists()
