"""What a run of the studies would train, and what it would cost, without running it.

`python -m experiments.reproduce --plan` prints one `PlanItem` per trained
program of each study: the models (architecture, parameters, how many), their
steps and batch, the training FLOPs and an estimated time on this machine,
then a total.  Nothing is trained and no data set is read.

- FLOPs come from XLA's cost analysis of the real program at the real size,
  traced on abstract inputs (`jax.eval_shape`, `jax.ShapeDtypeStruct`: no
  parameter is allocated).  XLA counts a loop body once, so `program_flops`
  multiplies every `lax.scan` body by its length.
- Times are extrapolations: the achieved FLOP/s of the real step, timed for a
  few steps of one model at a small batch (low-rank grids: a few cells), then
  `total FLOPs / that rate`.  A model too large to run here is timed at a
  shrunk width (halved until it fits), and the note says so.  The studies'
  sampling and scoring are not counted; a study that trains nothing shows the
  wall time of its last recorded run, when there is one.

The workload of each study mirrors its `measure` (the zoo groups of
`model_zoo.ensure_zoo`, the `train_many` grids of `molrg_networks`, the
`lowrank.train_grid` grids of `pca_equivalence` and `subspace_clustering`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import time
from typing import NamedTuple

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp

from repro_jax import settings as settings_lib
from repro_jax.lowrank import model as lowrank
from repro_jax.networks import model_zoo
from repro_jax.networks.generative import train as generative
from repro_jax.networks.training import step as step_lib
from repro_jax.networks.training.settings import LoopSettings
from repro_jax.networks.training.settings import TrainSettings
from repro_jax.networks.training.settings import WIDTH_FIELD
from repro_jax.studies import closed_form_atlas
from repro_jax.studies import common
from repro_jax.studies import conditional_models
from repro_jax.studies import fine_tuning
from repro_jax.studies import gan_vae_control
from repro_jax.studies import jacobian_rank
from repro_jax.studies import molrg_networks
from repro_jax.studies import pca_equivalence
from repro_jax.studies import reproducibility_across_models
from repro_jax.studies import runner

MEASURE_STEPS = 5               # steps timed per workload (0: time nothing)
CLOSED_FORM = ("theory_checks", "memorization_theory")
_MAX_STATE_BYTES = 1 << 30      # larger train states (a quarter of an accelerator's
                                # memory) are timed at a shrunk width,
_MAX_SAMPLE_SECONDS = 5.0       # as are models whose one-row step would take longer
_STEP_SECONDS = 0.5             # timed batch: the largest power of two under this
_TIME_BUDGET = 3.0              # seconds of timed steps per workload, at most
_LOWRANK_CELLS = 64             # cells of a timed low-rank grid
_IMAGE_SHAPES = {"digits": (8, 8, 1), "cifar10": (32, 32, 3)}
_ROWS = {"digits": 1797, "cifar10": 50_000}     # training rows of each image source


class PlanItem(NamedTuple):
  """One trained program of a study (or one line for a study that trains nothing).

  `flops_per_step` is one model's step at the real batch; `shared_with`
  names the study that trains the same models first (they are trained once
  and not counted again).
  """
  study: str
  what: str                     # e.g. "U-Net w=128 on 32×32×3, ×10 sizes ×2 seeds"
  num_models: int
  steps: int                    # training steps of each model
  batch: int                    # rows per step of each model
  flops_per_step: float
  est_seconds: float | None     # None: not estimated
  notes: str = ""
  params: int = 0               # parameters of one model
  shared_with: str = ""

  @property
  def flops(self) -> float:
    return float(self.num_models) * self.steps * self.flops_per_step


# FLOPs ---------------------------------------------------------------------------

def xla_flops(stage) -> float:
  """`flops` of a lowered or compiled program's cost analysis (0 when XLA gives none).

  Handles the forms jax versions return (a dict, or a list of one per
  program) and falls back to the compiled program where the lowered one has
  no analysis.
  """
  try:
    cost = stage.cost_analysis()
  except (NotImplementedError, RuntimeError):
    cost = None
  if not cost and hasattr(stage, "compile"):
    cost = stage.compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return max(float((cost or {}).get("flops", 0.0) or 0.0), 0.0)


def _hlo_flops(closed) -> float:
  """XLA's count for a closed jaxpr, loop bodies once."""
  args = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]
  return xla_flops(jax.jit(jax_core.jaxpr_as_fun(closed)).lower(*args))


def _loop_extra(jaxpr) -> float:
  """FLOPs that XLA's count misses: the other `length − 1` runs of each scan body."""
  extra = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scan":
      body, n = eqn.params["jaxpr"], int(eqn.params["length"])
      extra += (n - 1) * _hlo_flops(body) + n * _loop_extra(body.jaxpr)
    elif eqn.primitive.name != "cond":     # one branch runs: no scan in it is repeated
      for sub in jax_core.jaxprs_in_params(eqn.params):
        extra += _loop_extra(sub)
  return extra


def program_flops(fn, *args) -> float:
  """FLOPs of `fn(*args)` (args may be `ShapeDtypeStruct`s): XLA's cost analysis,
  with every `lax.scan` body counted as often as it runs."""
  closed = jax.make_jaxpr(fn)(*args)
  return _hlo_flops(closed) + _loop_extra(closed.jaxpr)


def data_shape(data) -> tuple[int, ...]:
  """Shape of one row of a `DataSettings` source, without reading it."""
  if data.name in _IMAGE_SHAPES:
    return _IMAGE_SHAPES[data.name]
  if data.name == "molrg":
    return (int(data.molrg.dim),)
  if data.name == "molrg_image":
    return tuple(int(v) for v in data.molrg.image_shape)
  raise ValueError(f"cannot plan training on data set {data.name!r} without reading it.")


def _abstract_step(cfg: TrainSettings, shape):
  """`(trainer, state, data)` of one model's step, the arrays abstract."""
  trainer = step_lib.make_trainer(cfg, shape)
  state = jax.eval_shape(lambda k: step_lib.init_state(trainer, k), jax.random.key(0))
  b, sds = int(cfg.train.batch_size), jax.ShapeDtypeStruct
  data = step_lib.DataArrays(sds((b, *shape), jnp.float32), sds((b,), jnp.int32),
                             sds((b,), jnp.int32), sds((), jnp.int32))
  return trainer, state, data


@functools.lru_cache(maxsize=None)
def step_flops(cfg: TrainSettings, shape: tuple[int, ...]) -> float:
  """FLOPs of one training step of one model (`step.train_step`) at `cfg.train.batch_size`."""
  trainer, state, data = _abstract_step(cfg, shape)
  return program_flops(functools.partial(step_lib.train_step, trainer), state, data)


# Rates ---------------------------------------------------------------------------

def _seconds_per_call(run, min_calls: int) -> float:
  """Mean seconds of `run()` after one warm-up call (which compiles): at least
  `min_calls` calls and 0.2 s, at most `_TIME_BUDGET` s."""
  jax.block_until_ready(run())
  t0, n = time.perf_counter(), 0
  while True:
    jax.block_until_ready(run())
    n += 1
    elapsed = time.perf_counter() - t0
    if (n >= min_calls and elapsed >= 0.2) or elapsed >= _TIME_BUDGET:
      return elapsed / n


@functools.lru_cache(maxsize=None)
def matmul_rate(n: int = 1024) -> float:
  """This device's float32 FLOP/s on an `n × n` matmul, the yardstick of the notes."""
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  return 2.0 * n ** 3 / _seconds_per_call(lambda: f(x), 3)


def _with_batch(cfg: TrainSettings, batch: int) -> TrainSettings:
  return settings_lib.override(cfg, {"train": {"batch_size": int(batch)}}, where="plan")


def _shrunk(cfg: TrainSettings) -> TrainSettings | None:
  """The same network at half the width (None below 8)."""
  m = cfg.model
  field = WIDTH_FIELD[m.name]
  w = getattr(m, field) // 2
  change = {field: w}
  # GroupNorm groups (U-Net) and attention heads (DiT) must divide the new width.
  if m.name == "unet":
    change["norm_groups"] = math.gcd(int(m.norm_groups), w)
  elif m.name == "dit":
    change["num_heads"] = math.gcd(int(m.num_heads), w)
  return None if w < 8 else settings_lib.override(cfg, {"model": change}, where="plan")


def _state_limit() -> int:
  """Largest train state timed here: a quarter of the device's memory where jax
  reports it (accelerators), else `_MAX_STATE_BYTES`."""
  stats = jax.devices()[0].memory_stats() or {}
  limit = stats.get("bytes_limit")
  return int(limit) // 4 if limit else _MAX_STATE_BYTES


def _timing_config(cfg: TrainSettings) -> TrainSettings:
  """What the time of a step depends on: the network and the batch (the rate
  of one network is shared by configs that differ in loss, optimizer or data)."""
  return TrainSettings(model=cfg.model, train=LoopSettings(batch_size=cfg.train.batch_size))


@functools.lru_cache(maxsize=None)
def _timed_rate(cfg: TrainSettings, shape: tuple[int, ...], steps: int) -> float:
  """Achieved FLOP/s of one model's real jitted step (state donated), on one device."""
  trainer = step_lib.make_trainer(cfg, shape)
  b = int(cfg.train.batch_size)
  data = step_lib.DataArrays(jnp.zeros((b, *shape), jnp.float32), jnp.zeros((b,), jnp.int32),
                             jnp.arange(b, dtype=jnp.int32), jnp.asarray(b, jnp.int32))
  step = jax.jit(functools.partial(step_lib.train_step, trainer), donate_argnums=0)
  box = [step_lib.init_state(trainer, jax.random.key(0))]

  def run():
    box[0], metrics = step(box[0], data)
    return metrics
  return step_flops(cfg, shape) / _seconds_per_call(run, steps)


@functools.lru_cache(maxsize=None)
def network_rate(cfg: TrainSettings, shape: tuple[int, ...],
                 steps: int) -> tuple[float | None, str]:
  """`(FLOP/s, how it was measured)` of a network's training step on this device.

  Timed at the largest power-of-two batch whose step should take under
  `_STEP_SECONDS`; a network whose train state exceeds `_state_limit()` or
  whose one-row step would take over `_MAX_SAMPLE_SECONDS` gets the matmul
  rate times the efficiency timed on its shrunk version (`_shrunk`).
  """
  _, state, _ = _abstract_step(cfg, shape)
  state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state))
  peak = matmul_rate()
  batch = int(cfg.train.batch_size)
  per_row = step_flops(cfg, shape) / batch
  if state_bytes > _state_limit() or per_row / peak > _MAX_SAMPLE_SECONDS:
    small = _shrunk(cfg)
    if small is None:
      return None, "too large to time here"
    rate, _ = network_rate(small, shape, steps)
    if rate is None:
      return None, "too large to time here"
    return rate, (f"too large to run here ({state_bytes / 2**30:.1f} GiB of train state): "
                  f"the matmul rate × the {rate / peak:.0%} efficiency timed on the "
                  f"{architecture(small.model)} version")
  b = 1
  while 2 * b <= batch and per_row * 2 * b / peak <= _STEP_SECONDS:
    b *= 2
  rate = _timed_rate(_timing_config(_with_batch(cfg, b)), shape, steps)
  return rate, (f"timed one model at batch {b}: {rate / 1e9:.3g} GFLOP/s, "
                f"{rate / peak:.0%} of the matmul rate")


# Low-rank grids ------------------------------------------------------------------

class LowrankJob(NamedTuple):
  """A `lowrank.train_grid` call: `cells` cells of `rows [K·N_max] × dim`."""
  what: str
  cfg: lowrank.TrainConfig
  cells: int
  rows: int
  dim: int
  r_max: int
  float64: bool


def _grid_inputs(job: LowrankJob, cells: int, concrete: bool):
  """`(keys [C, 2], data [C, rows, D], mask [C, rows], rank_mask [C, R])`."""
  dt = jnp.float64 if job.float64 else jnp.float32
  shapes = ((cells, job.rows, job.dim), (cells, job.rows), (cells, job.r_max))
  if not concrete:
    return (jax.ShapeDtypeStruct((cells, 2), jnp.uint32),
            *(jax.ShapeDtypeStruct(s, dt) for s in shapes))
  key = jax.random.PRNGKey(0)
  return (jax.random.split(key, cells), jax.random.normal(key, shapes[0], dt),
          jnp.ones(shapes[1], dt), jnp.ones(shapes[2], dt))


@functools.lru_cache(maxsize=None)
def _grid_flops(job: LowrankJob, cells: int) -> float:
  with jax.enable_x64(job.float64):
    return program_flops(functools.partial(lowrank.train_grid, cfg=job.cfg),
                         *_grid_inputs(job, cells, False))


def lowrank_rate(job: LowrankJob, steps: int) -> tuple[float, str]:
  """`(FLOP/s, how)`: the real program on at most `_LOWRANK_CELLS` cells and
  `10 · steps` steps, timed on this device."""
  cells = min(job.cells, _LOWRANK_CELLS)
  small = job._replace(cfg=dataclasses.replace(job.cfg, steps=min(job.cfg.steps, 10 * steps)))
  fn = jax.jit(functools.partial(lowrank.train_grid, cfg=small.cfg))
  with jax.enable_x64(job.float64):
    args = _grid_inputs(small, cells, True)
    rate = _grid_flops(small, cells) / _seconds_per_call(lambda: fn(*args), 1)
  return rate, (f"timed {cells} cells × {small.cfg.steps} steps: {rate / 1e9:.3g} GFLOP/s, "
                f"{rate / matmul_rate():.0%} of the matmul rate")


# The workload of each study ------------------------------------------------------

class NetworkJob(NamedTuple):
  """`num_models` networks of one training config, trained in one program."""
  what: str
  cfg: TrainSettings
  shape: tuple[int, ...]
  num_models: int


class KernelJob(NamedTuple):
  """Closed-form kernels a study evaluates (no training): their FLOPs."""
  what: str
  flops: float


class GenerativeJob(NamedTuple):
  """`num_models` GANs or VAEs of one variant (`generative.GenerativeSettings`)."""
  what: str
  settings: object
  shape: tuple[int, ...]
  num_models: int


def architecture(model) -> str:
  if model.name == "unet":
    return f"U-Net w={model.width}"
  if model.name == "dit":
    return f"DiT w={model.width} d={model.depth} p={model.patch_size}"
  return f"MLP h={model.hidden} d={model.depth}"


def _network(cfg: TrainSettings, shape, num_models: int, grid: str) -> NetworkJob:
  dims = "×".join(str(v) for v in shape)
  return NetworkJob(f"{architecture(cfg.model)} on {dims}, {grid}", cfg, tuple(shape),
                    int(num_models))


def _zoo_jobs(s) -> list[NetworkJob]:
  zoo = s.zoo
  grid = f"×{len(zoo.sizes)} sizes ×{len(zoo.seeds)} seeds"
  shape = data_shape(zoo.train.data)
  jobs = [_network(model_zoo.train_config(zoo, w), shape, len(zoo.sizes) * len(zoo.seeds),
                   grid) for w in zoo.widths]
  kernel = getattr(s, "kernel", None)          # reproducibility_across_samplers
  if kernel is not None:
    cfg = model_zoo.train_config(zoo, zoo.widths[int(kernel.width_index)], overrides={
        "diffusion": settings_lib.to_dict(kernel.diffusion)})
    jobs.append(_network(cfg, shape, len(zoo.sizes) * len(kernel.seeds),
                         f"×{len(zoo.sizes)} sizes ×{len(kernel.seeds)} seeds, "
                         f"{kernel.diffusion.parameterization} kernel"))
  return jobs


def _models_jobs(s) -> list[NetworkJob]:
  shape = data_shape(s.zoo.train.data)
  return [_network(cfg, shape, num, what)
          for what, cfg, num in reproducibility_across_models.training_jobs(s)]


def _molrg_jobs(s) -> list[NetworkJob]:
  jobs = []
  for name in s.archs():
    arch = getattr(s, name)
    shape = tuple(s.image_shape) if arch.image_view else (int(s.dim),)
    cells = len(s.ranks) * len(s.ns) * int(arch.num_seeds)
    jobs.append(_network(molrg_networks.train_settings(arch), shape, cells,
                         f"×{len(s.ranks)} ranks ×{len(s.ns)} N ×{arch.num_seeds} seeds"))
  return jobs


def _member_jobs(s, members=None) -> list[NetworkJob]:
  """The digits members of the low-dim studies (the cross-model matrix's networks)."""
  shape = data_shape(s.zoo.train.data)
  grid = f"×{len(s.digits_sizes)} sizes ×{len(s.digits_seeds)} seeds"
  # Described as `reproducibility_across_models` describes its members, so that
  # the table marks them shared (`_identity`).
  return [_network(jacobian_rank.member_config(s, m), shape,
                   len(s.digits_sizes) * len(s.digits_seeds), f"{m[0]}: {grid}")
          for m in (s.digits_members if members is None else members)]


def _inverse_jobs(s) -> list[NetworkJob]:
  """The members DPS runs (the cross-model matrix's networks, shared) and its probes."""
  return _member_jobs(s, s.digits_members + s.probe_members)


def _jacobian_jobs(s) -> list[NetworkJob]:
  """The digits members and the MoLRG group."""
  mz = s.molrg
  molrg_grid = f"×{len(mz.sizes)} sizes ×{len(mz.seeds)} seeds"
  return _member_jobs(s) + [_network(model_zoo.train_config(mz, w), data_shape(mz.train.data),
                                     len(mz.sizes) * len(mz.seeds), molrg_grid)
                            for w in mz.widths]


def _conditional_jobs(s) -> list[NetworkJob]:
  """The class-conditional groups, and the unconditional members they are compared
  with (described as the cross-model matrix describes them: shared)."""
  shape = data_shape(s.zoo.train.data)
  return [_network(cfg, shape, num, what)
          for what, cfg, num in conditional_models.training_jobs(s)]


def _fine_tuning_jobs(s) -> list[NetworkJob]:
  """Pretraining, training from scratch and partial fine-tuning (costed at a full
  step: every gradient is computed, then masked)."""
  shape = data_shape(s.zoo.train.data)
  return [_network(cfg, shape, num, what) for what, cfg, num in fine_tuning.training_jobs(s)]


def _gan_vae_jobs(s) -> list:
  """The GAN/VAE groups, then the diffusion members they are set against (shared)."""
  shape = data_shape(s.zoo.train.data)
  dims = "×".join(str(v) for v in shape)
  return [GenerativeJob(f"{what} ({g.kind}, {g.arch} w={g.width}, latent {g.latent}) on {dims}",
                        g, shape, num) if isinstance(g, generative.GenerativeSettings)
          else _network(g, shape, num, what)
          for what, g, num in gan_vae_control.training_jobs(s)]


def _atlas_jobs(s) -> list:
  """The N map's group (`reproducibility_regimes`' width), the members and MoLRG,
  then the patch kernels of the closed forms."""
  zoo = s.zoo
  grid = f"×{len(zoo.sizes)} sizes ×{len(zoo.seeds)} seeds"
  shape = data_shape(zoo.train.data)
  flops = closed_form_atlas.kernel_flops(s, shape, _ROWS.get(zoo.train.data.name, 0))
  return [_network(model_zoo.train_config(zoo, s.map_width), shape,
                   len(zoo.sizes) * len(zoo.seeds), grid)] + _jacobian_jobs(s) + [
      KernelJob(f"ELS kernels (windows {'/'.join(str(w) for w in s.windows)}; sampling)",
                flops)]


def _lowrank(what, cfg, seeds, ns, ranks, dim, k=1, float64=False, repeat=1):
  cells = int(seeds) * len(ns) * len(ranks) * repeat
  return LowrankJob(f"K={k} rank≤{max(ranks)} bases in D={dim}, {what}", cfg, cells,
                    k * max(ns), int(dim), max(ranks), bool(float64))


def _pca_jobs(s) -> list[LowrankJob]:
  tc = pca_equivalence.train_config
  grid = dict(seeds=s.num_seeds, ns=s.ns, ranks=s.ranks, dim=s.dim)
  jobs = [_lowrank("phase diagram", tc(s.train), float64=s.float64, **grid)]
  if s.plain_sgd:
    jobs.append(_lowrank("plain SGD", tc(s.train, precondition=False, max_grad_norm=None,
                                         learning_rate=s.plain_learning_rate), **grid))
  mc = dict(objective="mc", steps=s.mc_steps, learning_rate=s.mc_learning_rate,
            precondition=False, max_grad_norm=None, noise_per_point=s.mc_noise_per_point)
  configs = {"single_t": (tc(s.train, single_t=s.single_t), s.float64),
             "mc_model": (tc(s.train, noise_space="model", **mc), False),
             "mc_ambient": (tc(s.train, noise_space="ambient", **mc), False)}
  for v in s.variants:
    jobs.append(_lowrank(v, configs[v][0], s.num_seeds, s.variant_ns, s.variant_ranks,
                         s.dim, float64=configs[v][1]))
  return jobs


def _clustering_jobs(s) -> list[LowrankJob]:
  tc = pca_equivalence.train_config
  jobs = [_lowrank("phase diagram", tc(s.train, k), s.num_seeds, s.ns, s.ranks, d, k)
          for k in s.ks for d in s.dims]
  ns = [n for n in s.ns if n in s.random_ns]
  if ns:
    jobs.append(_lowrank(f"random starts ×{s.random_restarts}",
                         tc(s.train, s.ks[0], init="random", restarts=1), s.num_seeds,
                         ns, s.ranks, s.dims[0], s.ks[0], repeat=int(s.random_restarts)))
  return jobs


JOBS = {
    "pca_equivalence": _pca_jobs,
    "subspace_clustering": _clustering_jobs,
    "molrg_networks": _molrg_jobs,
    "reproducibility_regimes": _zoo_jobs,
    "reproducibility_across_samplers": _zoo_jobs,
    "reproducibility_across_models": _models_jobs,
    "jacobian_rank": _jacobian_jobs,
    "loco_edit": _jacobian_jobs,
    "watermark": _member_jobs,
    "ddim_table": _jacobian_jobs,
    "optimization_view": _jacobian_jobs,   # its trained-denoiser part
    "closed_form_atlas": _atlas_jobs,
    "conditional_models": _conditional_jobs,
    "fine_tuning": _fine_tuning_jobs,
    "gan_vae_control": _gan_vae_jobs,
    "inverse_problems": _inverse_jobs,
}


# Items ---------------------------------------------------------------------------

def _network_item(name: str, job: NetworkJob, measure_steps: int,
                  rate: float | None) -> PlanItem:
  cfg = job.cfg
  flops = step_flops(cfg, job.shape)
  params = step_lib.make_trainer(cfg, job.shape).layout.size
  steps = int(cfg.train.num_steps)
  est, note = None, ""
  if rate:
    est = job.num_models * steps * flops / rate
  elif measure_steps > 0:
    rate, note = network_rate(cfg, job.shape, int(measure_steps))
    est = None if rate is None else job.num_models * steps * flops / rate
  return PlanItem(name, job.what, job.num_models, steps, int(cfg.train.batch_size), flops,
                  est, note, params)


def _generative_item(name: str, job: GenerativeJob, measure_steps: int,
                     rate: float | None) -> PlanItem:
  """A GAN/VAE group: XLA's FLOPs of one step (critic steps included), timed at
  the target `rate` or, as a lower bound, this machine's matmul rate."""
  g = job.settings
  rows = _ROWS.get(next((k for k, v in _IMAGE_SHAPES.items() if v == job.shape), ""), 1024)
  fn, args = generative.abstract_step(g, job.shape, rows)
  flops = program_flops(fn, *args)
  here = rate or (matmul_rate() if measure_steps > 0 else None)
  est = None if not here else job.num_models * int(g.steps) * flops / here
  return PlanItem(name, job.what, job.num_models, int(g.steps), int(g.batch), flops, est,
                  "GAN/VAE; time = FLOPs / " + ("the target rate" if rate else
                                                "the matmul rate here, a lower bound"),
                  params=generative.num_params(g, job.shape))


def _lowrank_item(name: str, job: LowrankJob, measure_steps: int,
                  rate: float | None) -> PlanItem:
  restarts, steps = int(job.cfg.restarts), int(job.cfg.steps)
  models = job.cells * restarts
  total = _grid_flops(job, job.cells)
  est, note = None, ""
  if rate:
    est = total / rate
  elif measure_steps > 0:
    rate, note = lowrank_rate(job, int(measure_steps))
    est = total / rate
  kind = f"{job.cfg.objective} loss, {'float64' if job.float64 else 'float32'}"
  note = f"{kind}; {note}" if note else kind
  what = job.what + (f" ×{restarts} restarts" if restarts > 1 else "")
  return PlanItem(name, what, models, steps, job.rows, total / (models * steps), est, note,
                  job.cfg.num_components * job.dim * job.r_max)


def _last_run(name: str, results_dir) -> tuple[float | None, str]:
  """`(seconds, "last run: 35 s on AMD EPYC (cpu)")` from the study's manifest,
  or `(None, "")`."""
  if results_dir is None:
    return None, ""
  seconds, env = common.last_run(pathlib.Path(results_dir) / name)
  if seconds is None:
    return None, ""
  return seconds, (f"last run: {seconds:.0f} s on {env.get('cpu', '?')} "
                   f"({env.get('backend', '?')})")


def plan(name: str, settings, *, measure_steps: int = MEASURE_STEPS,
         results_dir=None, rate: float | None = None) -> list[PlanItem]:
  """The training workload of study `name` with its typed `settings`.

  Args:
    name: a registered study.
    settings: its settings (`runner.study_settings(name, variant)`).
    measure_steps: steps of each workload timed on this device (0: time
      nothing; `est_seconds` is then None).
    results_dir: where the study's last run is recorded (`<dir>/<name>/manifest.json`),
      whose wall time estimates a study that trains nothing.
    rate: the sustained FLOP/s of a target device (e.g. a GPU this machine
      lacks); when given nothing is timed and each trained item's estimate is
      its FLOPs / `rate`.

  Returns:
    One `PlanItem` per trained program, in the order the study trains them;
    one item with `num_models = 0` for a study that trains nothing.
  """
  seconds, last = _last_run(name, results_dir)
  if rate:   # a recorded wall time is of this machine, not of the target device
    seconds, last = None, ""
  if name not in JOBS:
    what = ("closed form, no training" if name in CLOSED_FORM
            else "no training workload described")
    return [PlanItem(name, what, 0, 0, 0, 0.0, seconds,
                     f"estimate = {last}" if last else "")]
  items = []
  for job in JOBS[name](settings):
    if isinstance(job, NetworkJob):
      items.append(_network_item(name, job, measure_steps, rate))
    elif isinstance(job, GenerativeJob):
      items.append(_generative_item(name, job, measure_steps, rate))
    elif isinstance(job, KernelJob):
      # Timed at this machine's matmul rate (a lower bound: the kernels reach
      # 10–46 % of it on CPU, `bench_patch`) or at the target `rate`.
      here = rate or (matmul_rate() if measure_steps > 0 else None)
      items.append(PlanItem(name, job.what, 1, 1, 0, job.flops,
                            None if not here else job.flops / here,
                            "closed-form kernels, no training; time = FLOPs / "
                            + ("the target rate" if rate else "the matmul rate here, a lower "
                               "bound (bench_patch: 10–46 % of it)")))
    else:
      items.append(_lowrank_item(name, job, measure_steps, rate))
  if last:
    items[-1] = items[-1]._replace(notes="; ".join(
        filter(None, [items[-1].notes, f"study {last} (sampling and scoring included)"])))
  return items


def _identity(item: PlanItem) -> tuple:
  return (item.what, item.num_models, item.steps, item.batch, item.flops_per_step)


def plan_studies(names, variant: str = "cpu", data: dict[str, str] | None = None, *,
                 measure_steps: int = MEASURE_STEPS, results_dir=None,
                 rate: float | None = None) -> list[PlanItem]:
  """`plan` of every named study, the models two studies share marked once
  trained (`shared_with`: the zoo of the two reproducibility studies).  No
  data path is checked: planning reads no data.  `rate`: as in `plan`."""
  results_dir = results_dir or runner.default_results_dir(variant)
  items, first = [], {}
  for name in names:
    s = runner.study_settings(name, variant, data)
    for item in plan(name, s, measure_steps=measure_steps, results_dir=results_dir,
                     rate=rate):
      if item.num_models and _identity(item) in first:
        item = item._replace(shared_with=first[_identity(item)], est_seconds=None)
      elif item.num_models:
        first[_identity(item)] = name
      items.append(item)
  return items


# Table ---------------------------------------------------------------------------

def _duration(seconds: float | None) -> str:
  if seconds is None:
    return "?"
  for unit, size in (("years", 365.25 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
    if seconds >= size:
      return f"{seconds / size:.1f} {unit}"
  return f"{seconds:.1f} s"


def _count(n: float) -> str:
  for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if n >= size:
      return f"{n / size:.3g}{unit}"
  return f"{n:.0f}"


def table(items: list[PlanItem], variant: str, *, measure_steps: int = MEASURE_STEPS,
          rate: float | None = None) -> str:
  """The plan as a text table: one row per item, its notes indented below, a total.

  `rate`: the sustained FLOP/s the items were costed at (`plan(rate=...)`)."""
  env = common.environment()
  where = f"{jax.device_count()} × {env['device_kind']} ({env['cpu']}, {env['backend']})"
  if rate:
    lines = [f"Plan of the {variant} variant; nothing is trained.  Times assume a sustained "
             f"{rate / 1e12:.3g} TFLOP/s on one device (--plan_tflops): total FLOPs / that "
             "rate, training only."]
  else:
    lines = [f"Plan of the {variant} variant on {where}; nothing is trained."]
  if measure_steps > 0 and not rate:
    lines.append(f"float32 matmul rate here: {matmul_rate() / 1e9:.3g} GFLOP/s.  Times are "
                 "extrapolations: total FLOPs / the FLOP rate of the real step timed here; "
                 "training only, on one device.")
  head = (f"{'study':32s} {'models':58s} {'#':>5s} {'params':>7s} {'steps × batch':>16s} "
          f"{'TFLOP':>10s} {'est. time':>10s}")
  lines += [head, "-" * len(head)]
  total_flops, total_s, unknown = 0.0, 0.0, 0
  for it in items:
    if it.shared_with:
      time_text = "shared"
    else:
      time_text = _duration(it.est_seconds)
      total_flops += it.flops
      total_s += it.est_seconds or 0.0
      unknown += it.est_seconds is None
    if it.num_models and not it.batch:     # a kernel item: FLOPs, no steps
      lines.append(f"{it.study:32s} {it.what:58s} {'':5s} {'':7s} {'':16s} "
                   f"{it.flops / 1e12:10.3g} {time_text:>10s}")
    elif it.num_models:
      lines.append(f"{it.study:32s} {it.what:58s} {it.num_models:5d} {_count(it.params):>7s} "
                   f"{f'{it.steps} × {it.batch}':>16s} {it.flops / 1e12:10.3g} "
                   f"{time_text:>10s}")
    else:
      lines.append(f"{it.study:32s} {it.what:58s} {'':5s} {'':7s} {'':16s} {'':10s} "
                   f"{time_text:>10s}")
    notes = it.notes
    if it.shared_with:
      notes = f"the same models as in {it.shared_with}: trained once, not counted again"
    if notes:
      lines.append(f"{'':33s}{notes}")
  lines.append("-" * len(head))
  tail = f" ({unknown} item(s) without an estimate)" if unknown else ""
  lines.append(f"{'total':32s} {'':58s} {'':5s} {'':7s} {'':16s} {total_flops / 1e12:10.3g} "
               f"{_duration(total_s) if total_s else '?':>10s}{tail}")
  return "\n".join(lines)
