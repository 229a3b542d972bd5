"""The benchmark scripts run end to end at small sizes (their full runs write benchmarks/results/)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import pfnjax
from conftest import env_without_xla_flags

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # as when the script runs: its sibling _results imports
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_inference_latency_benchmark_smoke():
    module = _load("inference_latency")
    res = module.run(n_ctx=40, n_qry=30, num_features=3, d_model=32, num_layers=2, num_heads=2, num_buckets=20,
                     chunk_size=16, repeats=1)
    # run() itself checks that the cached and uncached paths give the same logits; the table must
    # report each measured latency and its ratio to the uncached pass
    table = module.markdown(res)
    for k in ("uncached", "cached_first", "encode_only", "cached_requery", "exact_gp"):
        assert f"| {res[k] * 1e3:.1f} |" in table, k
    ratio = res["uncached"] / res["cached_requery"]
    assert (f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower") in table


def test_sklearn_real_data_benchmark_smoke():
    module = _load("sklearn_real_data")
    results = {"iris": [module.evaluate_split(module.DATASETS["iris"], seed=0)],
               "diabetes": [module.evaluate_split(module.DATASETS["diabetes"], seed=0)]}
    iris, diabetes = results["iris"][0], results["diabetes"][0]
    assert iris["PFN"]["score"] > 0.85 and 0 < iris["PFN"]["nll"] < 0.5
    assert diabetes["PFN"]["score"] > 0.3 and 0.8 < diabetes["PFN"]["coverage90"] <= 1.0
    # the linear baseline's Gaussian NLL and the PFN's bar NLL are in the same units (y's)
    assert abs(diabetes["PFN"]["nll"] - diabetes["linear"]["nll"]) < 0.5
    table = module.markdown(results, splits=1)
    assert "| iris" in table and "coverage" in table


@pytest.mark.parametrize("name", ["reg-tiny", "cls-tiny"])
def test_pretrained_eval_benchmark_beats_the_context_only_baseline(name):
    module = _load("pretrained_eval")
    pfn = pfnjax.load(name)
    evaluate = module.eval_regression if pfn.task == "regression" else module.eval_classification
    rows = evaluate(pfn, (5, 50), num_datasets=40, num_queries=20)
    assert [r["context"] for r in rows] == [5, 50]
    # a trained model uses x: better NLL than the context's marginal of y, more so with more context
    assert all(r["nll"] < r["baseline_nll"] for r in rows)
    assert rows[1]["nll"] < rows[0]["nll"]
    assert np.isfinite([r["nll"] for r in rows]).all()
    assert "| 50 |" in module.markdown(name, pfn, rows)


def test_step_profile_benchmark_smoke():
    module = _load("step_profile")
    res = module.profile("test", bf16=True, repeats=2, batch_size=8)
    # on the CPU "auto" attention is the matmul formulation; bf16 compute as asked
    assert res["attention_impl"] == "matmul" and res["dtype"] == "bfloat16" and res["batch"] == 8
    parts = ("sample", "forward", "forward_backward", "attention", "loss_head", "optimizer", "full_step")
    assert all(np.isfinite(res[k]) and res[k] > 0 for k in parts)
    assert res["rest"] == max(res["forward_backward"] - res["attention"] - res["loss_head"], 0.0)
    table = module.markdown([res])
    assert f"{8 / res['full_step']:.1f}" in table and "of which attention" in table


def test_train_throughput_benchmark_smoke():
    """The step's FLOP accounting: a shared split computes less than the per-dataset step, never less
    than the step needs, and the per-dataset step computes the full T x T attention and head."""
    module = _load("train_throughput")
    from pfnjax.presets import preset_config

    cfg = preset_config("cpu-ref")
    own, shared = (module.step_flops(cfg.replace(split_sharing=s), 1000) for s in ("dataset", "step"))
    assert shared["needed"] == own["needed"] <= shared["computed"] < own["computed"]
    t, d, ff, layers = 200, 128, 256, 4
    full = 3 * (layers * (2 * t * d * (4 * d + 2 * ff) + 4 * t * t * d) + t * 2 * (d * ff + ff * 1000) + 2 * t * 6 * d)
    assert own["computed"] == full and own["mean_context"] == pytest.approx(100.0)
    row = module.measure("test", steps=2, split_sharing="step")
    assert row["buckets"] > 1 and row["datasets_per_s"] > 0 and row["attention"] == "matmul"
    assert "| test | classic | step |" in module.markdown([row], {1024: 100.0}, {})


def test_gpu_check_refuses_to_run_without_a_gpu():
    import subprocess

    env = env_without_xla_flags(JAX_PLATFORMS="cpu", PYTHON=sys.executable)
    out = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "tests"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "no GPU here" in out.stderr


def test_speedrun_summary_reads_minutes_and_levels_from_the_scores():
    """Crossing times are interpolated between checkpoints, values at a minute come from the last
    checkpoint reached, a rerun of a name replaces its curve; hand-computed values."""
    module = _load("speedrun")
    scores = [{"train_s": 120, "auc": 0.80}, {"train_s": 360, "auc": 0.83}, {"train_s": 600, "auc": 0.86}]
    # 0.842 lies 40% of the way from 0.83 (6 min) to 0.86 (10 min)
    assert module.crossing(scores, "auc", 0.842, True) == pytest.approx(6 + 0.4 * 4)
    assert module.crossing(scores, "auc", 0.9, True) is None
    assert module.crossing([{"train_s": 60, "nrmse": 0.5}], "nrmse", 0.6, False) == pytest.approx(1.0)
    assert module.at_minute(scores, "auc", 10) == 0.86 and module.at_minute(scores, "auc", 30) is None
    assert module.at_minute(scores, "auc", 6) == 0.83


def test_speedrun_trains_for_its_budget_and_scores_the_gp_gap(tmp_path):
    """18 seconds of the ``test`` preset on the GP prior (set-up and compile included), in two parts (12
    s, then resumed to 18 s): a checkpoint at the first step past each 6-second mark and at the budget, a
    finite GP gap per checkpoint, and a report with the run's row."""
    module = _load("speedrun")
    jsonl = tmp_path / "speedrun.jsonl"
    flags = ["--name", "tiny-gp", "--preset", "test", "--prior", "gp", "--steps", "100000", "--score-every-min", "0.1",
             "--gp-datasets", "8", "--runs", str(tmp_path / "runs"), "--jsonl", str(jsonl), "--no-progress"]
    module.main(flags + ["--budget-min", "0.2"])
    first = module.read_records(jsonl)["tiny-gp"]["scores"]
    # a later session goes on from the last checkpoint to the larger budget and scores only the new checkpoints
    module.main(flags + ["--budget-min", "0.3", "--resume"])
    runs = module.read_records(jsonl)
    assert runs["tiny-gp"]["scores"][:len(first)] == first and runs["tiny-gp"]["resumed"]
    scores = runs["tiny-gp"]["scores"]
    times = [s["train_s"] for s in scores]
    marks = [int(t // 6) for t in times[:-1]]
    assert len(scores) >= 2 and marks == sorted(set(marks)) and min(marks) >= 1 and 18 <= times[-1] < 19
    assert all(np.isfinite(s["gp_gap"]) and s["gp_gap"] > -0.05 for s in scores)  # cannot beat the exact GP
    assert [s["step"] for s in scores] == sorted(s["step"] for s in scores)
    assert runs["tiny-gp"]["steps_done"] == scores[-1]["step"]
    text = (tmp_path / "speedrun.md").read_text()
    assert "| tiny-gp | classic |" in text and (tmp_path / "speedrun.png").exists()
