"""Shared absl plumbing of the study entry points (`--config`, `--workdir`).

The config file (`configs/<study>.py:<variant>`, with `--config.x=` overrides)
is parsed once into the study's typed settings; the run is
`repro_jax.studies.runner.run_study`, the same as in the main job.
"""

from absl import app
from absl import flags
from ml_collections import config_flags


def main_for(study: str) -> None:
  """Define `--config` and `--workdir`, then run the study."""
  config = config_flags.DEFINE_config_file(
      "config", f"configs/{study}.py:cpu", "Study config file, `path.py:variant`.")
  workdir = flags.DEFINE_string("workdir", f"results/{study}",
                                "Directory for config, metrics, figures and report.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from repro_jax import settings  # after flag parsing: jax starts here
    from repro_jax.studies import runner
    path = flags.FLAGS["config"].config_filename
    variant = path.rsplit(":", 1)[1] if ":" in path else "cpu"
    try:
      parsed = settings.parse(runner.study_module(study).Settings, config.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    runner.run_study(study, parsed, workdir.value, variant=variant)

  app.run(main)
