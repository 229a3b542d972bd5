"""Every Python block of docs/architecture.md runs as written (in order, one namespace).

The blocks run in a fresh interpreter: they register a prior, an architecture, a head and an
evaluator, and the registries of this test process must stay as the other tests expect."""

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

RUNNER = """
import re, sys
blocks = re.findall(r"```python\\n(.*?)```", open(sys.argv[1]).read(), flags=re.S)
namespace = {}
for block in blocks:
    exec(compile(block, sys.argv[1], "exec"), namespace)
print("head kind:", namespace["pfn"].head.kind)
"""


def test_architecture_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 4, "one example per extension point: prior, architecture, head, evaluator"
    assert all(len(block.strip().splitlines()) >= 10 for block in blocks)
    out = subprocess.run([sys.executable, "-c", RUNNER, str(DOC)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "head kind: doc_bernoulli" in out.stdout
    assert "doc_median_error" in out.stdout and "coverage90" in out.stdout
