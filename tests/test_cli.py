"""`pfnjax train|eval|predict` end to end in a fresh interpreter with one CPU device (as a user runs
it): train and evaluate a GP run, evaluate the shipped classifier by name. Every registered prior's
sampler is covered by tests/test_prior_contract.py."""

import subprocess
import sys
import textwrap

import pytest

from conftest import env_without_xla_flags

_SCRIPT = textwrap.dedent(
    """
    import sys
    from pfnjax.cli import main
    out = sys.argv[1]
    assert main(["train", "--prior", "gp", "--preset", "test", "--steps", "3", "--out", f"{out}/gp",
                 "--no-progress"]) == 0
    print("TRAINED gp", flush=True)
    assert main(["eval", f"{out}/gp", "--num-datasets", "8", "--context-sizes", "1,5"]) == 0
    assert main(["eval", "cls-tiny", "--num-datasets", "8", "--context-sizes", "1,5"]) == 0  # a shipped model
    import numpy as np
    rng = np.random.default_rng(0)
    np.savetxt(f"{out}/ctx.csv", np.c_[rng.uniform(size=(10, 2)), rng.normal(size=10)], delimiter=",")
    np.savetxt(f"{out}/qry.csv", rng.uniform(size=(3, 2)), delimiter=",")
    assert main(["predict", f"{out}/gp", "--context", f"{out}/ctx.csv", "--queries", f"{out}/qry.csv"]) == 0
    # errors are one clear line and exit code 2, not a traceback
    assert main(["eval", f"{out}/does-not-exist"]) == 2
    assert main(["train", "--prior", "gp", "--preset", "test", "--steps", "0", "--out", f"{out}/bad"]) == 2
    """
)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    env = env_without_xla_flags()
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "TRAINED gp" in out.stdout
    assert "mean gap over context sizes" in out.stdout  # gp eval table
    assert "class-frequency accuracy" in out.stdout  # scm eval table
    assert "mean,q0.05,q0.5,q0.95" in out.stdout  # predict CSV header
    assert "does not exist" in out.stderr and "steps must be a positive int" in out.stderr
