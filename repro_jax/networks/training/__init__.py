"""Training stack: pure jitted steps, data parallelism, checkpoints, many models.

Public surface:

- `TrainSettings` (typed, frozen; `variant(name)` gives smoke / cpu / molrg /
  paper): everything that defines a run, parsed once from a config.

- `train(cfg, workdir, *, mesh=None) -> (state, history)`: one model, data-
  parallel over a 1-D mesh, orbax checkpoints, resume, metrics.jsonl; Ctrl-C
  saves the step reached and raises `Interrupted` (a KeyboardInterrupt).
- `train_many(cfg, workdir=None, *, seeds, subset_seeds=None, subsets=None,
  mesh=None)`: M models of one architecture in one vmapped program (each
  model's batch split over the mesh, if given).
- `load_denoiser(workdir, *, use_ema=True, ...) -> Denoiser`: the canonical
  `denoise(x, σ) -> x0` of a checkpoint (metadata in `.info`), for every
  sampler; `network_denoiser(trainer, params [P])` and
  `stacked_denoiser(trainer, params [M, P])` wrap parameters in memory.
- Building blocks: `TrainState`, `DataArrays`, `Trainer`, `make_trainer`,
  `init_state`, `train_step`, `train_chunk`, `many_chunk`, `jit_chunk`,
  `net_fn`; config helpers `check_config`, `optimizer`, `parameterization`.

What belongs here: everything that turns `TrainSettings` and data into trained
parameters and back into denoisers.  May import `repro_jax.networks.models`,
`repro_jax.data`, `repro_jax.diffusion`, `repro_jax.io`, `repro_jax.sharding`,
`repro_jax.settings`, `repro_jax.validation`.
"""

from repro_jax.networks.training.config import check_config
from repro_jax.networks.training.config import optimizer
from repro_jax.networks.training.config import parameterization
from repro_jax.networks.training.load import load_denoiser
from repro_jax.networks.training.load import network_denoiser
from repro_jax.networks.training.load import stacked_denoiser
from repro_jax.networks.training.loop import Interrupted
from repro_jax.networks.training.loop import prepare
from repro_jax.networks.training.loop import run_loop
from repro_jax.networks.training.loop import train
from repro_jax.networks.training.many import stack_subsets
from repro_jax.networks.training.many import train_many
from repro_jax.networks.training.settings import TrainSettings
from repro_jax.networks.training.settings import variant
from repro_jax.networks.training.step import DataArrays
from repro_jax.networks.training.step import Trainer
from repro_jax.networks.training.step import TrainState
from repro_jax.networks.training.step import init_state
from repro_jax.networks.training.step import jit_chunk
from repro_jax.networks.training.step import make_trainer
from repro_jax.networks.training.step import many_chunk
from repro_jax.networks.training.step import net_fn
from repro_jax.networks.training.step import train_chunk
from repro_jax.networks.training.step import train_step

__all__ = ["TrainSettings", "variant", "train", "train_many", "Interrupted", "load_denoiser",
           "network_denoiser", "stacked_denoiser", "prepare", "run_loop",
           "stack_subsets", "check_config", "optimizer", "parameterization",
           "TrainState", "DataArrays", "Trainer", "make_trainer", "init_state",
           "train_step", "train_chunk", "many_chunk", "jit_chunk", "net_fn"]
