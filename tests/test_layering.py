"""Inference is a sibling of training, not a client of it: importing the inference modules in a
fresh interpreter loads neither :mod:`pfnjax.training` nor anything that imports optax on
pfnjax's behalf.

flax 0.12's ``flax.nnx`` package imports optax in its own ``__init__`` (``flax/nnx/helpers.py``),
so optax is in ``sys.modules`` whenever the Flax model is; the test therefore records *which
module* executed ``import optax`` and requires it to be inside flax, never inside pfnjax.
"""

import ast
import json
import subprocess
import sys
import textwrap

from pathlib import Path

import pytest

import pfnjax

PROBE = textwrap.dedent('''
    import json, sys, traceback

    importers = []

    class OptaxSpy:
        """Records the file whose code runs `import optax` (the frame below importlib's)."""
        def find_spec(self, name, path=None, target=None):
            if name == "optax":
                frames = [f for f in traceback.extract_stack()[:-1] if not f.filename.startswith("<")]
                importers.append(frames[-1].filename)
            return None

    sys.meta_path.insert(0, OptaxSpy())
    import {module}
    print(json.dumps({{
        "modules": sorted(m for m in sys.modules if m == "pfnjax" or m.startswith("pfnjax.")),
        "optax_importers": importers,
    }}))
''')


def _probe(module: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["pfnjax.predict", "pfnjax.sklearn", "pfnjax.evaluators"])
def test_inference_imports_no_training(module):
    if module == "pfnjax.sklearn":
        pytest.importorskip("sklearn")
    found = _probe(module)
    assert not [m for m in found["modules"] if m.startswith("pfnjax.training")], found["modules"]
    # optax arrives only through flax.nnx's own imports, never from a pfnjax module
    assert found["optax_importers"], "expected flax.nnx to import optax (if it stops, tighten this test)"
    assert all("/flax/" in f for f in found["optax_importers"]), found["optax_importers"]
    assert not any("/pfnjax/" in f for f in found["optax_importers"])


def test_predict_loads_no_priors():
    """Prediction needs neither the prior library nor the evaluator."""
    found = _probe("pfnjax.predict")
    assert not [m for m in found["modules"] if m.startswith(("pfnjax.priors", "pfnjax.evaluators"))], found["modules"]


INFERENCE_SIDE = ["checkpoint.py", "config.py", "evaluators", "predict.py", "preprocessing.py", "runs.py",
                  "sklearn", "presets.py", "heads", "model", "distributions", "priors", "numerics.py"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_training_code_imports_optax_or_training():
    """Static check over every inference-side module, including function-level imports; the
    positive control is the trainer, which must import both optax and pfnjax's own modules."""
    root = Path(pfnjax.__file__).parent
    files = [p for entry in INFERENCE_SIDE for p in ((root / entry).rglob("*.py") if (root / entry).is_dir()
                                                       else [root / entry])]
    assert len(files) > 20
    for path in files:
        bad = {n for n in _imports(path) if n == "optax" or n.startswith(("optax.", "pfnjax.training"))}
        assert not bad, f"{path.relative_to(root)} imports {bad}"
    trainer = _imports(root / "training" / "state.py") | _imports(root / "training" / "trainer.py")
    assert "optax" in trainer and "pfnjax.runs" in trainer


def test_heads_and_models_import_no_priors():
    """Heads are fitted from labels the trainer draws; neither heads nor models know the priors."""
    root = Path(pfnjax.__file__).parent
    for package in ("heads", "model"):
        for path in (root / package).rglob("*.py"):
            bad = {n for n in _imports(path) if n.startswith(("pfnjax.priors", "pfnjax.training", "pfnjax.config"))}
            assert not bad, f"{path.relative_to(root)} imports {bad}"
    assert "pfnjax.priors.base" in _imports(root / "training" / "state.py")  # the control: the trainer does


def test_pfnjax_train_is_the_function():
    import pfnjax
    import pfnjax.training

    assert callable(pfnjax.train) and not isinstance(pfnjax.train, type(pfnjax))
    assert pfnjax.train.__module__ == "pfnjax.training.trainer"
