"""The README's Python examples run as written (the first with fewer training steps).

It runs in a fresh interpreter without the suite's 4 fake CPU devices, as a user's laptop
would: with fake devices outnumbering the 2 CPU cores, XLA:CPU's in-process all-reduce can
deadlock on long per-device ops (its rendezvous waits on threads the busy pool never runs).
"""

import re
import subprocess
import sys
from pathlib import Path

from conftest import env_without_xla_flags

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    code = blocks[0]
    assert "steps=300" in code
    env = env_without_xla_flags()
    out = subprocess.run([sys.executable, "-c", code.replace("steps=300", "steps=15")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "90% interval" in out.stdout


def test_readme_sklearn_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if "PFNRegressor" in b)
    env = env_without_xla_flags()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r2 = float(re.search(r"R2 ([-0-9.]+)", out.stdout).group(1))
    acc = float(re.search(r"accuracy ([-0-9.]+)", out.stdout).group(1))
    assert r2 > 0.3 and acc > 0.9, out.stdout


def test_readme_finetune_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if "pfnjax.finetune(" in b)
    out = subprocess.run([sys.executable, "-c", code], env=env_without_xla_flags(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    losses = dict(re.findall(r"(as shipped|fine-tuned) log loss ([0-9.]+)", out.stdout))
    assert set(losses) == {"as shipped", "fine-tuned"}, out.stdout
    # the history starts with the starting weights' held-out NLL, then one entry per evaluation
    steps = [tuple(map(float, m)) for m in re.findall(r"\((\d+), ([0-9.]+)\)", out.stdout)]
    assert steps[0][0] == 0 and len(steps) >= 2, out.stdout
