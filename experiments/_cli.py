"""Shared absl plumbing of the study entry points (`--config`, `--workdir`)."""

import importlib

from absl import app
from absl import flags
from ml_collections import config_flags


def main_for(study: str, default_config: str, default_workdir: str) -> None:
  """Define `--config` and `--workdir`, then run `repro_jax.studies.<study>.run`."""
  config = config_flags.DEFINE_config_file(
      "config", default_config, "Study config file, `path.py:variant`.")
  workdir = flags.DEFINE_string("workdir", default_workdir,
                                "Directory for config, metrics, figures and report.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    module = importlib.import_module(f"repro_jax.studies.{study}")
    module.run(config.value, workdir.value)

  app.run(main)
