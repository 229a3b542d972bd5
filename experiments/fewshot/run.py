"""Few-shot image classification (the PFN paper's fourth area): a PFN trained only on the ``strokes``
prior (random pen-stroke glyphs, 8×8), evaluated on scikit-learn's real handwritten digits.

    python experiments/fewshot/run.py --retrain         # trains fewshot-cpu (about 60 min on 2 cores), evaluates
    python experiments/fewshot/run.py --model RUN_DIR   # evaluates a trained run
    python experiments/fewshot/run.py --smoke --retrain # seconds, for CI: a tiny model, a few tasks

Protocol, the same for every method: ``--tasks`` random tasks per setting (5-way 1-shot, 5-way
5-shot, 10-way 5-shot; seed fixed), each drawing its classes from the 10 digits, ``K`` support
images per class and ``--queries`` query images per class, disjoint; labels are the classes'
order in the task. Pixels are divided by 16 (the prior's images lie in [0, 1]). Accuracy is the
mean over tasks of the query accuracy, with a 95% interval over tasks.

Methods:

* **PFN**: the strokes-prior PFN, the support set as its context, one forward pass per task batch;
* **1-NN** and **logistic regression** on the pixels (scikit-learn, fitted per task);
* **ProtoNet**: a prototypical network (an MLP embedding, squared-distance logits to the class
  means of the support embeddings) trained on the same prior for the same CPU-minutes as the PFN;
* **tabular PFNClassifier**: the default classifier as shipped (``cls-small``), fitted per task.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import common  # noqa: E402
from pfnjax.priors.base import prior_from_spec  # noqa: E402
from pfnjax.priors.strokes import StrokesPrior  # noqa: E402

SETTINGS = ((5, 1), (5, 5), (10, 5))  # (ways, shots)
METHODS = ("pfn", "1nn", "logistic", "protonet", "tabular_pfn")


# --------------------------------------------------------------------------- tasks
@dataclasses.dataclass(frozen=True)
class Tasks:
    """``count`` tasks of one setting: support ``x [count, N·K, 64]`` / ``y``, queries ``x [count, N·Q, 64]`` / ``y``."""

    ways: int
    shots: int
    x_support: np.ndarray
    y_support: np.ndarray
    x_query: np.ndarray
    y_query: np.ndarray
    support_rows: np.ndarray  # the rows of load_digits() each image is
    query_rows: np.ndarray


def digit_tasks(ways: int, shots: int, queries: int, count: int, seed: int) -> Tasks:
    """Random N-way K-shot tasks of scikit-learn's 8×8 digits (pixels / 16), support and queries disjoint."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x_all, y_all = digits.data.astype(np.float32) / 16.0, digits.target
    by_class = [np.flatnonzero(y_all == c) for c in range(10)]
    rng = np.random.default_rng([seed, ways, shots])
    xs, ys, xq, yq, rs, rq = [], [], [], [], [], []
    for _ in range(count):
        classes = rng.choice(10, ways, replace=False)
        support, query = [], []
        for label, c in enumerate(classes):
            rows = rng.choice(by_class[c], shots + queries, replace=False)
            support.append((rows[:shots], label))
            query.append((rows[shots:], label))
        # support rows class by class in turn (as the prior's contexts), queries shuffled
        order = [(rows[k], label) for k in range(shots) for rows, label in support]
        q = [(r, label) for rows, label in query for r in rows]
        q = [q[i] for i in rng.permutation(len(q))]
        rs.append(np.array([r for r, _ in order]))
        rq.append(np.array([r for r, _ in q]))
        xs.append(x_all[[r for r, _ in order]])
        ys.append(np.array([label for _, label in order], np.int32))
        xq.append(x_all[[r for r, _ in q]])
        yq.append(np.array([label for _, label in q], np.int32))
    return Tasks(ways, shots, np.stack(xs), np.stack(ys), np.stack(xq), np.stack(yq), np.stack(rs), np.stack(rq))


# --------------------------------------------------------------------------- methods
def pfn_predict(pfn, tasks: Tasks, batch: int = 100) -> np.ndarray:
    """``i32[count, N·Q]`` PFN predictions: the most probable of the task's ``N`` classes."""
    out = []
    for s in range(0, len(tasks.x_support), batch):
        logits = pfn.logits(tasks.x_support[s:s + batch], tasks.y_support[s:s + batch], tasks.x_query[s:s + batch])
        out.append(np.asarray(jnp.argmax(logits[..., :tasks.ways], axis=-1)))
    return np.concatenate(out)


def per_task(fit_predict, tasks: Tasks) -> np.ndarray:
    return np.stack([fit_predict(xs, ys, xq) for xs, ys, xq in zip(tasks.x_support, tasks.y_support, tasks.x_query)])


def nearest_neighbour(xs, ys, xq):
    d = ((xq[:, None] - xs[None]) ** 2).sum(-1)
    return ys[np.argmin(d, axis=1)]


def logistic(xs, ys, xq):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(xs, ys).predict(xq)


def tabular_pfn(xs, ys, xq):
    import warnings

    from pfnjax.sklearn import PFNClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant pixel columns are dropped with a warning
        return PFNClassifier(random_state=0).fit(xs, ys).predict(xq)


# --------------------------------------------------------------------------- prototypical network
def protonet_init(key, width: int, pixels: int) -> dict:
    sizes = (pixels, width, width, width)
    keys = jax.random.split(key, len(sizes) - 1)
    return {f"w{i}": jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a) for i, (k, a, b) in enumerate(zip(keys, sizes, sizes[1:]))} | {
        f"b{i}": jnp.zeros(b) for i, b in enumerate(sizes[1:])}


def protonet_embed(params: dict, x):
    layers = len([k for k in params if k.startswith("w")])
    for i in range(layers):
        x = x @ params[f"w{i}"] + params[f"b{i}"]
        if i < layers - 1:
            x = jax.nn.relu(x)
    return x


def protonet_logits(params: dict, xs, ys, xq, ways: int):
    """Negative squared distances of the query embeddings to the class means of the support's."""
    es, eq = protonet_embed(params, xs), protonet_embed(params, xq)
    onehot = jax.nn.one_hot(ys, ways)  # [S, ways]
    counts = onehot.sum(0)
    protos = (onehot.T @ es) / jnp.maximum(counts, 1.0)[:, None]
    logits = -((eq[:, None] - protos[None]) ** 2).sum(-1)
    return jnp.where(counts[None] > 0, logits, -1e9)  # classes absent from the support cannot be predicted


def train_protonet(prior: StrokesPrior, seconds: float, key, seq_len: int = 128, batch: int = 32,
                   width: int = 256, lr: float = 1e-3) -> tuple[dict, int]:
    """A prototypical network trained on the prior's tasks for ``seconds`` (compile included):
    each task's context rows are the support set, its query rows the queries."""
    pixels = prior.num_pixels
    params = protonet_init(key, width, pixels)
    tx = optax.adam(lr)
    opt_state = tx.init(params)
    max_ways = prior.max_ways

    def task_loss(params, k):
        k_sep, k_data = jax.random.split(k)
        sep = jax.random.randint(k_sep, (), max_ways, seq_len - 1)
        x, y = prior.sample_dataset(k_data, seq_len, pixels, jnp.int32(pixels), sep)
        is_ctx = jnp.arange(seq_len) < sep
        # the support is the context rows: mask the others out of the prototypes
        es, eq = protonet_embed(params, x), protonet_embed(params, x)
        onehot = jax.nn.one_hot(y, max_ways) * is_ctx[:, None]
        counts = onehot.sum(0)
        protos = (onehot.T @ es) / jnp.maximum(counts, 1.0)[:, None]
        logits = -((eq[:, None] - protos[None]) ** 2).sum(-1)
        logits = jnp.where(counts[None] > 0, logits, -1e9)
        nll = -jax.nn.log_softmax(logits)[jnp.arange(seq_len), y]
        return jnp.sum(nll * ~is_ctx) / jnp.sum(~is_ctx)

    @jax.jit
    def step(params, opt_state, k):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(jax.vmap(lambda kk: task_loss(p, kk))(
            jax.random.split(k, batch))))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, steps))
        float(loss)
        steps += 1
    return params, steps


def protonet_predict(params: dict, tasks: Tasks) -> np.ndarray:
    fn = jax.jit(jax.vmap(lambda xs, ys, xq: jnp.argmax(protonet_logits(params, xs, ys, xq, tasks.ways), -1)))
    return np.asarray(fn(tasks.x_support, tasks.y_support, tasks.x_query))


# --------------------------------------------------------------------------- results
def accuracy(pred: np.ndarray, tasks: Tasks) -> dict:
    per = (pred == tasks.y_query).mean(axis=1)
    return {"accuracy": float(per.mean()), "ci95": float(common.ci95(per)), "tasks": int(len(per))}


def table(records: dict, info: dict) -> str:
    lines = [f"## Few-shot digits: accuracy over {info['tasks']} tasks per setting (95% interval), device "
             f"{info['device']}", "",
             f"PFN: {info['pfn']} ({info['pfn_minutes']:.0f} CPU-minutes of training on the strokes prior). "
             f"ProtoNet: {info['protonet_steps']} steps in {info['protonet_minutes']:.0f} CPU-minutes on the same "
             f"prior. Queries: {info['queries']} per class.", "",
             "| method | " + " | ".join(f"{n}-way {k}-shot" for n, k in SETTINGS) + " |",
             "|---|" + "---:|" * len(SETTINGS)]
    for method in METHODS:
        if method in records:
            cells = [f"{r['accuracy']:.3f} ± {r['ci95']:.3f}" if r else "" for r in
                     (records[method].get(f"{n}x{k}") for n, k in SETTINGS)]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_accuracy(records: dict, path: Path) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    labels = [f"{n}-way {k}-shot" for n, k in SETTINGS]
    width = 0.8 / len(records)
    for i, (method, by) in enumerate(records.items()):
        values = [by.get(f"{n}x{k}", {}).get("accuracy", np.nan) for n, k in SETTINGS]
        errors = [by.get(f"{n}x{k}", {}).get("ci95", 0.0) for n, k in SETTINGS]
        ax.bar(np.arange(len(SETTINGS)) + i * width, values, width, yerr=errors, label=method, capsize=2)
    ax.set_xticks(np.arange(len(SETTINGS)) + 0.4 - width / 2, labels)
    ax.set_ylabel("query accuracy on real digits")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_task(tasks: Tasks, pred: np.ndarray, path: Path, shown: int = 10) -> None:
    """The first task: its support images (a column per class), then queries with the PFN's label
    (green: right, red: wrong)."""
    plt = common.pyplot()
    n = tasks.ways
    fig, axes = plt.subplots(2, max(n, shown), figsize=(1.0 * max(n, shown), 2.4))
    for ax in axes.ravel():
        ax.axis("off")
    for c in range(n):
        axes[0, c].imshow(tasks.x_support[0][tasks.y_support[0] == c][0].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        axes[0, c].set_title(f"class {c}", fontsize=7)
    for j in range(min(shown, tasks.x_query.shape[1])):
        ok = pred[0, j] == tasks.y_query[0, j]
        axes[1, j].imshow(tasks.x_query[0, j].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        axes[1, j].set_title(f"PFN: {pred[0, j]}", fontsize=7, color="green" if ok else "red")
    fig.suptitle(f"A {n}-way {tasks.shots}-shot task: support (top), queries with the PFN's label (bottom)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, HERE / "results")
    parser.add_argument("--model", help="a trained strokes-prior PFN (run directory); default: fewshot-cpu")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per setting")
    parser.add_argument("--queries", type=int, default=5, help="query images per class")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--protonet-minutes", type=float, help="ProtoNet's training time (default: the PFN's)")
    args = parser.parse_args(argv)
    common.check_scale(parser, args)
    if args.smoke:
        args.tasks = min(args.tasks, 20)
    start = time.perf_counter()
    pfn, run_dir = common.get_pfn("fewshot-cpu", args, args.model)
    prior = prior_from_spec(pfn.prior_spec) if pfn.prior_spec else None
    if not isinstance(prior, StrokesPrior) or pfn.max_features < prior.num_pixels:
        raise SystemExit("the PFN must be trained on the strokes prior with a column per pixel")
    pfn_minutes = _training_minutes(run_dir)
    records: dict[str, dict] = {m: {} for m in args.methods}
    protonet_steps, protonet_minutes = 0, 0.0
    if "protonet" in args.methods:
        protonet_minutes = args.protonet_minutes or (0.1 if args.smoke else pfn_minutes)
        params, protonet_steps = train_protonet(prior, 60 * protonet_minutes, jax.random.key(args.seed))
    first = {}
    for ways, shots in SETTINGS:
        tasks = digit_tasks(ways, shots, args.queries, args.tasks, args.seed)
        key = f"{ways}x{shots}"
        for method in args.methods:
            if method == "pfn":
                pred = pfn_predict(pfn, tasks)
                first[key] = (tasks, pred)
            elif method == "1nn":
                pred = per_task(nearest_neighbour, tasks)
            elif method == "logistic":
                pred = per_task(logistic, tasks)
            elif method == "protonet":
                pred = protonet_predict(params, tasks)
            else:
                pred = per_task(tabular_pfn, tasks)
            records[method][key] = accuracy(pred, tasks)
            print(f"{key} {method}: {records[method][key]['accuracy']:.3f} ± {records[method][key]['ci95']:.3f}",
                  flush=True)
    info = {"tasks": args.tasks, "queries": args.queries, "device": common.device_name(), "pfn": str(run_dir),
            "pfn_minutes": pfn_minutes, "protonet_steps": protonet_steps, "protonet_minutes": protonet_minutes,
            "seconds": time.perf_counter() - start}
    figures = {"accuracy": lambda p: plot_accuracy(records, p)}
    if "pfn" in args.methods:
        figures["sample_task"] = lambda p: plot_task(*first["5x1"], p)
    common.write_results(Path(args.out), args.smoke, table(records, info), {"records": records, "info": info}, figures)
    print(table(records, info))


def _training_minutes(run_dir: Path) -> float:
    """Wall minutes of the run's training from its ``metrics.jsonl``: the time between its first and
    last log lines, extended to the steps before the first (0 without two lines)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0.0
    logs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    logs = [r for r in logs if "time" in r and "step" in r]
    if len(logs) < 2 or logs[-1]["step"] <= logs[0]["step"]:
        return 0.0
    span = logs[-1]["time"] - logs[0]["time"]
    return span * logs[-1]["step"] / (logs[-1]["step"] - logs[0]["step"]) / 60


if __name__ == "__main__":
    main()
