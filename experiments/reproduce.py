"""The main job: every study at CPU scale, then the results page.

  python -m experiments.reproduce                      # all studies, skip up-to-date
  python -m experiments.reproduce --only=theory_checks --force
  python -m experiments.reproduce --variant=paper --cifar10=/data/cifar-10-batches-py
  python -m experiments.reproduce --variant=paper --plan   # what it would train, and cost
  python -m experiments.reproduce --variant=paper --plan --plan_tflops=100   # on a GPU

A study stopped by an error or by Ctrl-C ends the job after the summary of
the studies finished before it; Ctrl-C then says in one line where training
stopped and exits with status 130 (a rerun skips the studies up to date).
"""

import math
import os

from absl import flags

from experiments import _cli
from repro_jax import sharding
from repro_jax.studies import STUDIES
from repro_jax.studies import plan
from repro_jax.studies import runner

_ONLY = flags.DEFINE_string("only", None, f"Comma-separated subset of: {', '.join(STUDIES)}.")
_FORCE = flags.DEFINE_bool("force", False, "Rerun studies whose results are up to date.")
_VARIANT = flags.DEFINE_enum("variant", "cpu", ["cpu", "smoke", "paper"],
                             "Config variant of every study: CPU scale, seconds, or paper scale.")
_RESULTS = flags.DEFINE_string(
    "results_dir", None, "Where results are written (default: results/ for the cpu "
    "variant, workdirs/results-<variant>/ for the others).")
_LIST = flags.DEFINE_bool("list", False, "List the studies, whether each is up to date "
                          "and how long its last run took, and exit.")
_CIFAR10 = flags.DEFINE_string(
    "cifar10", None, "Directory of the CIFAR-10 python batches (cifar-10-batches-py), "
    "given to every study that reads CIFAR-10 (the paper variant); nothing is downloaded.")
_PLAN = flags.DEFINE_bool(
    "plan", False, "Print what each study would train (models, parameters, steps × "
    "batch, FLOPs) and an estimated time on this machine, then a total, and exit: "
    "nothing is trained and no data set is read.")
_PLAN_TFLOPS = flags.DEFINE_float(
    "plan_tflops", None, "With --plan: cost every trained model at this sustained rate "
    "(TFLOP/s) of a target device instead of timing steps here, e.g. the GPU the paper "
    "variant will run on.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() (multi-host).")


def main(argv):
  if len(argv) > 1:
    _cli.fail(f"unexpected arguments {argv[1:]}.")
  data = {"cifar10": _CIFAR10.value} if _CIFAR10.value else {}
  try:
    names = runner.select(_ONLY.value)
  except ValueError as e:
    _cli.fail(f"--only: {e}")
  rate = _PLAN_TFLOPS.value
  if rate is not None and (not _PLAN.value or not math.isfinite(rate) or rate <= 0):
    _cli.fail("--plan_tflops needs --plan and a finite rate > 0.")
  if _LIST.value and _PLAN.value:
    _cli.fail("--list and --plan are separate commands; give one.")
  if _LIST.value:
    print(runner.listing(_VARIANT.value, _RESULTS.value, data))
    return
  if _PLAN.value:
    rate = rate and rate * 1e12
    try:
      items = plan.plan_studies(names, _VARIANT.value, data, results_dir=_RESULTS.value,
                                rate=rate)
    except ValueError as e:
      _cli.fail(str(e))
    print(plan.table(items, _VARIANT.value, rate=rate))
    return
  results = _RESULTS.value or runner.default_results_dir(_VARIANT.value)
  _cli.check_writable_dir(results, "results_dir")
  sharding.maybe_initialize_distributed(_DISTRIBUTED.value)
  try:
    runner.run_studies(names, variant=_VARIANT.value, results_dir=results,
                       force=_FORCE.value, data=data)
  except (ValueError, FileNotFoundError) as e:
    _cli.fail(str(e))
  except KeyboardInterrupt as e:   # Ctrl-C, in training (`Interrupted`) or elsewhere
    _cli.stopped(e, f"the studies that finished are in {os.path.abspath(results)} (rerun "
                    "the same command to go on)")


if __name__ == "__main__":
  _cli.run(main)
