r"""Train a denoising network (U-Net or MLP) as configured.

    python -m experiments.train --config=configs/train.py:cpu --workdir=workdirs/digits
    python -m experiments.train --config=configs/train.py:paper --workdir=workdirs/c10 \
        --config.data.path=/data/cifar-10-batches-py --config.model.width=64

Writes `config.json`, `data_indices.npy`, `metrics.jsonl` and orbax
`checkpoints/` under `--workdir`; run the same command again to resume from the
latest checkpoint (a changed config is refused, see `--allow_config_change`).
Ctrl-C stops after the steps in flight, saves that step and exits with status
130; rerunning a finished run says so and trains nothing.
`--config.distributed=True` calls
`jax.distributed.initialize()` first (multi-host).  All the work is
`repro_jax.networks.training.train`.
"""

import os

from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import _cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config, `configs/train.py:<variant>` (smoke, cpu, molrg, "
    "paper); override fields with --config.<field>=<value>.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output / resume directory.",
                               required=True)
_PRINT = _cli.define_print_config()
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume although train.num_steps, train.log_every, "
    "train.checkpoint_every, train.keep_checkpoints, train.num_devices, train.step_loop or "
    "distributed differ from the checkpoint's config (recorded in config_changes.jsonl; "
    "config.json keeps the run as started).  Other changes are always refused.")


def main(argv):
  if len(argv) > 1:
    _cli.fail(f"unexpected arguments {argv[1:]}.")
  if _CONFIG.value is None:
    _cli.fail("--config is required, e.g. --config=configs/train.py:cpu")
  if _PRINT.value:
    _cli.print_config(_CONFIG.value)
    return
  logging.set_verbosity(logging.INFO)
  from repro_jax import settings  # after flag parsing: jax starts here
  from repro_jax import sharding
  from repro_jax.networks import training
  try:
    cfg = settings.parse(training.TrainSettings, _CONFIG.value)
    training.check_config(cfg)
  except ValueError as e:
    _cli.fail(str(e))
  _cli.check_writable_dir(os.path.dirname(os.path.abspath(_WORKDIR.value)), "workdir",
                         _WORKDIR.value)
  sharding.maybe_initialize_distributed(cfg.distributed)
  workdir = os.path.abspath(_WORKDIR.value)
  try:
    state, history = training.train(cfg, _WORKDIR.value,
                                    allow_config_change=_ALLOW_CHANGE.value)
  except (ValueError, FileNotFoundError, FloatingPointError) as e:   # incl. divergence
    _cli.fail(str(e))
  except training.Interrupted as e:
    if e.saved == e.step:
      _cli.interrupted(f"interrupted at step {e.step}; checkpoint saved in {workdir} "
                       "(rerun the same command to resume)")
    elif e.saved is not None:
      _cli.interrupted(f"interrupted at step {e.step}; the last checkpoint in {workdir} is "
                       f"step {e.saved} (rerun the same command to resume from it)")
    _cli.interrupted(f"interrupted at step {e.step}; no checkpoint saved in {workdir} "
                     "(rerun the same command to start again)")
  except KeyboardInterrupt:   # outside the step loop (loading, restoring): nothing new
    _cli.interrupted(f"interrupted; nothing new saved in {workdir} (rerun the same command "
                     "to resume)")
  outputs = f"{workdir}/ (checkpoints, metrics.jsonl, config.json)"
  if not history:
    print(f"already trained to step {int(state.step)}: {outputs}")
  else:
    print(f"wrote {outputs}")


if __name__ == "__main__":
  _cli.run(main)
