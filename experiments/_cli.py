"""Shared absl plumbing of the entry points: one-line errors, `--print_config`,
writable-output checks, the bundled configs, and the study entry points
(`--config`, `--workdir`).

The configs are found from any working directory: the defaults are the files
of the `configs` package installed beside `experiments`, and a `--config`
value `configs/<name>.py[:variant]` naming no file in the working directory
names the bundled file of that name.

A bad flag, config override, variant or input ends the command with one line
on stderr, `<command>: error: <what, and what is allowed>`, and exit status 2,
before any work; never a traceback or a page of usage.
"""

from __future__ import annotations

import logging as std_logging
import os
import pathlib
import sys
import tempfile

from absl import app
from absl import flags
from ml_collections import config_flags

# What a config override or a flag value can raise while absl parses the flags.
_PARSE_ERRORS = (flags.Error, AttributeError, KeyError, ValueError, TypeError, IndexError)

# The bundled configs: the `configs` package installed beside this one (the
# repository's `configs/` in a checkout or an editable install).  Found by
# location, not by import, so a `configs` package of the user's cannot shadow it.
CONFIGS_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"


def _command() -> str:
  """`experiments.<name>` of the entry point running."""
  name = pathlib.Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "repro_jax"
  return f"experiments.{name}"


def fail(message: str) -> None:
  """Print `<command>: error: message` and exit with status 2."""
  print(f"{_command()}: error: {message}", file=sys.stderr)
  sys.exit(2)


def interrupted(message: str) -> None:
  """Print `<command>: message` for a run stopped by Ctrl-C and exit with status 130
  (128 + SIGINT, as a shell reports it)."""
  print(f"{_command()}: {message}", file=sys.stderr)
  sys.exit(130)


def stopped(e: KeyboardInterrupt, rest: str) -> None:
  """`interrupted` for a job of studies stopped by Ctrl-C: the training step it
  stopped at and its checkpoint, if it was training, then `rest`."""
  from repro_jax.networks.training import Interrupted
  if not isinstance(e, Interrupted):
    interrupted(f"interrupted; {rest}")
  kept = ("checkpoint saved" if e.saved == e.step else "no checkpoint saved"
          if e.saved is None else f"last checkpoint: step {e.saved}")
  interrupted(f"interrupted at training step {e.step} ({kept}); {rest}")


def config_file(name: str, variant: str | None = None) -> str:
  """The bundled config `configs/<name>.py` as a `--config` value (absolute path,
  `:variant` appended if given)."""
  path = CONFIGS_DIR / f"{name}.py"
  return f"{path}:{variant}" if variant else str(path)


def resolve_config(value: str) -> str:
  """A `--config` value with `configs/<name>.py` read from the bundled configs
  when the working directory holds no such file; any other value unchanged."""
  path, sep, variant = value.partition(":")
  parts = pathlib.PurePath(path).parts
  if len(parts) == 2 and parts[0] == "configs" and not os.path.exists(path):
    bundled = CONFIGS_DIR / parts[1]
    if bundled.is_file():
      return f"{bundled}{sep}{variant}"
  return value


def _checked_config(value: str) -> str:
  resolved = resolve_config(value)
  if not os.path.isfile(resolved.partition(":")[0]):
    bundled = ", ".join(sorted(p.name for p in CONFIGS_DIR.glob("[!_]*.py")))
    fail(f"--config={value}: no such config file (bundled in configs/: {bundled}).")
  return resolved


def _with_bundled_configs(argv):
  """`argv` with each `--config=V` / `--config V` value passed through
  `resolve_config`; a value naming no file ends the command in one line."""
  out, value_next = list(argv[:1]), False
  for a in argv[1:]:
    if value_next:
      a, value_next = _checked_config(a), False
    elif a.startswith("--config="):
      a = "--config=" + _checked_config(a[len("--config="):])
    else:
      value_next = a == "--config"
    out.append(a)
  return out


def _override_args(argv):
  return [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]


def parse_flags(argv):
  """absl's flag parsing, with every failure reported in one line."""
  try:
    return flags.FLAGS(_with_bundled_configs(argv))
  except SystemExit as e:   # --help / --helpfull print their text, then exit
    if e.code and any(a in ("--help", "--helpfull", "--helpshort", "-h", "-?")
                      for a in argv[1:]):
      sys.exit(0)
    raise
  except _PARSE_ERRORS as e:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # A config file's own error (e.g. an unknown variant) is the last line.
    text = (lines[-1] if lines else "").strip('"').strip("'")
    if isinstance(e, AttributeError) or isinstance(e, KeyError):
      bad = [a for a in _override_args(argv) if a.rsplit(".", 1)[-1] == text.strip("'\"")]
      where = bad[0] if bad else "--config.<field>"
      fail(f"{where}: no such config field ('{text}'); --print_config lists the fields.")
    fail(text or type(e).__name__)


def check_writable_dir(path, flag: str, value=None) -> None:
  """Fail now (not after the work) if the directory `path` cannot be created and
  written; `value` is the flag's value as the user gave it (default `path`)."""
  path = pathlib.Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
      pass
  except OSError as e:
    fail(f"--{flag}={value or path}: {path} is not a writable directory "
         f"({e.strerror or e}).")


def define_print_config():
  return flags.DEFINE_bool("print_config", False,
                           "Print the resolved config (every field, after overrides) and exit.")


def print_config(config) -> None:
  print(config)


class _QuietLibraries(std_logging.Filter):
  """Keep orbax's per-phase INFO lines and jax's backend probing ("Unable to
  initialize backend 'tpu'" on a CPU machine) out of the output unless
  `--verbosity=1` or higher asks for them."""

  def filter(self, record):
    if flags.FLAGS["verbosity"].value >= 1:
      return True
    noisy = "orbax" in record.pathname or record.name.startswith("jax._src.xla_bridge")
    return not noisy or record.levelno >= std_logging.WARNING


def run(main) -> None:
  """`app.run(main)` with one-line flag errors and quiet library logs."""
  def with_quiet_logs(argv):
    from absl import logging
    logging.get_absl_handler().addFilter(_QuietLibraries())
    std_logging.getLogger("jax._src.xla_bridge").addFilter(_QuietLibraries())
    return main(argv)
  app.run(with_quiet_logs, flags_parser=parse_flags)


def main_for(study: str) -> None:
  """Define `--config`, `--workdir` and `--print_config`, then run the study."""
  config = config_flags.DEFINE_config_file(
      "config", config_file(study, "cpu"), f"Study config file, `path.py:variant` (e.g. "
      f"configs/{study}.py:smoke; the bundled file unless ./configs/{study}.py exists); "
      "override fields with --config.<field>=<value> (--print_config lists them).")
  workdir = flags.DEFINE_string(
      "workdir", None, f"Directory for config, metrics, figures and report (default: "
      f"where the main job puts the study, results/{study} for the cpu variant, "
      f"workdirs/results-<variant>/{study} for the others).")
  show = define_print_config()

  def main(argv):
    if len(argv) > 1:
      fail(f"unexpected arguments {argv[1:]}.")
    if show.value:
      print_config(config.value)
      return
    from repro_jax import settings  # after flag parsing: jax starts here
    from repro_jax.studies import runner
    path = flags.FLAGS["config"].config_filename
    variant = path.rsplit(":", 1)[1] if ":" in path else "cpu"
    try:
      parsed = settings.parse(runner.study_module(study).Settings, config.value)
    except ValueError as e:
      fail(str(e))
    out = workdir.value or str(runner.default_results_dir(variant) / study)
    check_writable_dir(pathlib.Path(out).parent, "workdir", out)
    try:
      runner.run_study(study, parsed, out, variant=variant)
    except (ValueError, FileNotFoundError) as e:
      fail(str(e))
    except KeyboardInterrupt as e:
      stopped(e, f"{os.path.abspath(out)} unchanged (rerun the same command to run it "
                 "again)")
    print(f"wrote {os.path.abspath(out)}/ (report.md, metrics.json, figures)")

  run(main)
