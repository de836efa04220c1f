"""From typed training settings (`TrainSettings`) to validated building blocks.

Every check here runs in Python before anything is compiled, so a bad setting
fails at once with a message that names the offending field.
"""

from __future__ import annotations

import math

import optax

from repro_jax import settings as settings_lib
from repro_jax import validation
from repro_jax import data as data_lib
from repro_jax.networks import models
from repro_jax.networks.models import layers
from repro_jax.diffusion import schedules
from repro_jax.networks.training.settings import MODEL_FIELDS
from repro_jax.networks.training.settings import TrainSettings

OPTIMIZERS = ("adam", "adamw")
STEP_LOOPS = ("auto", "scan", "python")


def model_options(model_cfg) -> dict:
  """The constructor options of `model_cfg.name`: its `MODEL_FIELDS`."""
  return {k: getattr(model_cfg, k) for k in MODEL_FIELDS[model_cfg.name]}


def parameterization(cfg) -> models.Parameterization:
  d = cfg.diffusion
  return models.get_parameterization(
      d.parameterization, d.schedule, time_input=d.time_input,
      sigma_data=float(d.sigma_data), p_mean=float(d.p_mean), p_std=float(d.p_std))


def learning_rate(optim_cfg):
  """Linear warm-up from 0 to `learning_rate` over `warmup_steps`, then constant."""
  lr, warm = float(optim_cfg.learning_rate), int(optim_cfg.warmup_steps)
  if warm <= 0:
    return optax.constant_schedule(lr)
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warm),
                               optax.constant_schedule(lr)], [warm])


def optimizer(optim_cfg) -> optax.GradientTransformation:
  """Adam / AdamW with warm-up and optional global-norm gradient clipping."""
  o = optim_cfg
  if o.name not in OPTIMIZERS:
    raise validation.unknown_name("optimizer", o.name, OPTIMIZERS)
  lr = learning_rate(o)
  if o.name == "adam":
    opt = optax.adam(lr, b1=o.b1, b2=o.b2, eps=o.eps)
  else:
    opt = optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)
  if o.grad_clip and o.grad_clip > 0:
    opt = optax.chain(optax.clip_by_global_norm(float(o.grad_clip)), opt)
  return opt


def _positive(value, name):
  if not isinstance(value, (int, float)) or value <= 0:
    raise ValueError(f"config.{name} must be > 0; got {value!r}.")


def _check_dit(m, data_shape) -> None:
  """The DiT's options (those that need no data when `data_shape` is None)."""
  if m.name == "dit":
    models.check_dit_args(data_shape, m.width, m.depth, m.patch_size, m.num_heads,
                          m.mlp_ratio, m.dropout)


def check_config(cfg: TrainSettings) -> None:
  """Static checks (names, ranges) that need no data."""
  if not isinstance(cfg, TrainSettings):
    raise TypeError("training takes `TrainSettings` (parse a ConfigDict with "
                    f"`repro_jax.settings.parse(TrainSettings, config)`); got {type(cfg).__name__}.")
  if cfg.data.name not in data_lib.DATASETS:
    raise validation.unknown_name("dataset (config.data.name)", cfg.data.name,
                               data_lib.DATASETS)
  if cfg.data.name == "cifar10" and not cfg.data.path:
    raise ValueError("config.data.name='cifar10' needs config.data.path, the directory "
                     "of the python batches (--config.data.path=.../cifar-10-batches-py).")
  if cfg.data.name == "array" and not cfg.data.path:
    raise ValueError("config.data.name='array' needs config.data.path (.npy or .npz).")
  if cfg.model.name not in models.MODELS:
    raise validation.unknown_name("model (config.model.name)", cfg.model.name, models.MODELS)
  _check_dit(cfg.model, None)
  if cfg.model.name == "unet" and cfg.model.conv_impl not in layers.CONV_IMPLS:
    raise validation.unknown_name("convolution implementation (config.model.conv_impl)",
                                  cfg.model.conv_impl, layers.CONV_IMPLS)
  d = cfg.diffusion
  if d.parameterization not in models.PARAMETERIZATIONS:
    raise validation.unknown_name("parameterization (config.diffusion.parameterization)",
                               d.parameterization, models.PARAMETERIZATIONS)
  if d.parameterization != "edm" and d.schedule not in schedules.SCHEDULES:
    raise validation.unknown_name("schedule (config.diffusion.schedule)", d.schedule,
                               schedules.SCHEDULES)
  parameterization(cfg)  # remaining diffusion checks
  optimizer(cfg.optim)
  t = cfg.train
  for name in ("batch_size", "num_steps", "log_every", "checkpoint_every",
               "keep_checkpoints"):
    _positive(getattr(t, name), f"train.{name}")
  validation.check_rate(cfg.optim.learning_rate, "config.optim.learning_rate")
  for name in ("weight_decay", "b1", "b2", "eps", "grad_clip"):
    value = getattr(cfg.optim, name)
    if not math.isfinite(value) or value < 0:
      raise ValueError(f"config.optim.{name} must be a finite number >= 0; got {value!r}.")
  if not 0.0 <= t.ema_decay < 1.0:
    raise ValueError(f"config.train.ema_decay must be in [0, 1); got {t.ema_decay}.")
  if t.checkpoint_every % t.log_every:
    raise ValueError(f"config.train.checkpoint_every={t.checkpoint_every} must be a "
                     f"multiple of config.train.log_every={t.log_every}.")
  step_loop(cfg)
  if not 0.0 <= cfg.model.label_dropout < 1.0:
    raise ValueError("config.model.label_dropout must be in [0, 1).")


def check_against_data(cfg, dataset: data_lib.Dataset, num_devices: int) -> None:
  """Checks that need the data shape, the labels and the device count."""
  n = int(cfg.data.num_train)
  if n != -1 and not 1 <= n <= len(dataset):
    raise ValueError(f"config.data.num_train={n} but dataset {cfg.data.name!r} has "
                     f"{len(dataset)} rows (use -1 for all).")
  if cfg.model.name == "unet":
    m = cfg.model
    models.check_unet_args(dataset.data_shape, m.width, tuple(m.ch_mult),
                           tuple(m.attn_resolutions), m.norm_groups, m.num_res_blocks,
                           m.dropout)
  _check_dit(cfg.model, dataset.data_shape)
  if cfg.model.num_classes > 0:
    if dataset.labels is None:
      raise ValueError(f"config.model.num_classes={cfg.model.num_classes} but dataset "
                       f"{cfg.data.name!r} has no labels.")
    if int(dataset.labels.max()) >= cfg.model.num_classes:
      raise ValueError(f"labels reach {int(dataset.labels.max())} but "
                       f"config.model.num_classes={cfg.model.num_classes}.")
  b = int(cfg.train.batch_size)
  if b % num_devices:
    raise ValueError(f"global batch config.train.batch_size={b} must be divisible by "
                     f"the {num_devices} data-parallel devices.")


def num_devices(cfg, available: int) -> int:
  n = int(cfg.train.num_devices) or available
  if not 1 <= n <= available:
    raise ValueError(f"config.train.num_devices={cfg.train.num_devices} but only "
                     f"{available} devices exist.")
  return n


def step_loop(cfg) -> str:
  """`train.step_loop`, with "auto" = "python" for a U-Net with `conv_impl="xla"`
  on a CPU, else "scan".

  XLA:CPU runs autodiff's convolution gradients 20–40× slower inside a
  `lax.scan` (jax-ml/jax#12868); the U-Net's convolutions write theirs as
  canonical convolutions (`models.conv`), with which a scanned U-Net step is as
  fast as a looped one (`benchmarks/bench_training.py`), but a model built with
  `conv_impl="xla"` still needs the loop; `"im2col"` has no convolution; small
  MLPs gain from the scan.  The DiT
  has no convolution (its patches are cut by reshapes): a width-64 DiT on 8×8
  digits takes 42 ms a step either way on a 2-core CPU, a width-32 one 17 ms in
  the scan and 20 ms in the loop.
  """
  loop = cfg.train.step_loop
  if loop not in STEP_LOOPS:
    raise validation.unknown_name("step loop (config.train.step_loop)", loop, STEP_LOOPS)
  if loop == "auto":
    import jax
    xla_conv = cfg.model.name == "unet" and cfg.model.conv_impl == "xla"
    return "python" if xla_conv and jax.default_backend() == "cpu" else "scan"
  return loop


def to_json(cfg: TrainSettings) -> str:
  return settings_lib.to_json(cfg, indent=2)

