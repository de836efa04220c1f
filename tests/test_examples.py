"""The examples run as written, from any directory, and say what they claim."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_samples_are_training_copies(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  env["XLA_FLAGS"] = ""   # one CPU device, as a user's machine has
  r = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], cwd=tmp_path,
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  for name in ("ddim", "heun"):
    m = re.search(rf"^{name}: (\d+)/(\d+) samples are copies of training images", r.stdout, re.M)
    assert m and m.group(1) == m.group(2), r.stdout
  assert re.search(r"same training image from \d+/\d+ noises", r.stdout), r.stdout
  assert (tmp_path / "quickstart.png").stat().st_size > 0


def test_readme_quickstart_is_the_example():
  """The README's "Quickstart (Python)" block is the example's code, verbatim."""
  readme = (ROOT / "README.md").read_text()
  block = readme.split("<!-- quickstart -->\n```python\n", 1)[1].split("```", 1)[0]
  example = (ROOT / "examples" / "quickstart.py").read_text()
  assert block.strip() == example[example.index("import sys"):].strip()
