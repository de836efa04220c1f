"""Test set-up: CPU backend, 8 fake CPU devices, quick compiles (persistent cache opt-in).

The environment must be set before jax is imported anywhere, which is why it
happens at the top of this file (pytest imports conftest.py first).
"""

import collections
import os
import pathlib
import signal

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags += " --xla_force_host_platform_device_count=8"
# The test programs are tiny: compiling them, not running them, is the suite's
# cost, and LLVM's optimization passes are most of the compile time (a third
# less CPU time for the tiny paper runs).  Fast math stays off either way; at
# most the last bits may differ from optimized code (e.g. fused multiply-adds).
# Set the flag yourself to test the optimized code.
if "xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _flags.strip()

# A run started in the background by a script (`cmd &` without job control)
# inherits SIGINT ignored; the Ctrl-C tests need it delivered as in a terminal
# (KeyboardInterrupt here, and the default action in the processes they start).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
  signal.signal(signal.SIGINT, signal.default_int_handler)

import jax  # noqa: E402
import pytest  # noqa: E402

# JAX's persistent compilation cache is off unless REPRO_JAX_TEST_CACHE names a
# directory: serializing some executables into it has crashed test workers
# (a segfault reading an entry, an abort writing one), and on a clean
# checkout it saves nothing.  When on, each pytest-xdist worker gets its own
# subdirectory (entries are written in place, not renamed into place).
if os.environ.get("REPRO_JAX_TEST_CACHE"):
  _CACHE = (pathlib.Path(os.environ["REPRO_JAX_TEST_CACHE"]) / f"jax-{jax.__version__}"
            / os.environ.get("PYTEST_XDIST_WORKER", "main"))
  jax.config.update("jax_compilation_cache_dir", str(_CACHE))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# The files that run whole studies, longest first (about 1-5 min each on 2
# cores, most of it compiling).  They are collected first, and pytest-xdist's
# `--dist loadfile` hands out the files in collection order, so that they start
# early and the many short files fill both workers at the end.  (Its default
# order, most tests first, would leave them, each with a few tests, to the end,
# where one worker can be left with several while the other has finished.)
_LONGEST_FILES = (
    "test_paper_wiring_others.py", "test_closed_form_studies.py", "test_across_models.py",
    "test_repro_studies.py", "test_molrg_networks.py", "test_train_entrypoint.py",
    "test_paper_wiring_rest.py", "test_paper_wiring.py", "test_jacobian_rank.py",
    "test_loco_edit.py", "test_ddim_table.py")


def pytest_configure(config):
  if hasattr(config.option, "loadscopereorder"):   # pytest-xdist: keep the order below
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  """The files of `_LONGEST_FILES` first, in that order, then the others, most
  tests first (xdist's own order); each file's tests stay in their order."""
  count = collections.Counter(item.path.name for item in items)
  rank = {name: i for i, name in enumerate(_LONGEST_FILES)}

  def key(item):
    name = item.path.name
    return (rank[name], 0) if name in rank else (len(rank), -count[name])
  items.sort(key=key)


@pytest.fixture
def x64():
  """Run the test body with float64 enabled (for identities checked to ~1e-10)."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope="session")
def mesh8():
  """A 1-D mesh over the 8 fake CPU devices."""
  from repro_jax import sharding
  assert jax.device_count() == 8, "conftest must set 8 fake CPU devices before jax starts"
  return sharding.make_mesh(8)


@pytest.fixture(scope="session")
def cifar10(tmp_path_factory):
  """A tiny directory in the `cifar-10-batches-py` format (64 images), made once."""
  from cifar_files import write_cifar_dir
  return write_cifar_dir(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", 64)
