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
