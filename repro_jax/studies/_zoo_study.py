"""What the studies that score the model zoo share: settings, variants, prologue."""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import NamedTuple

import jax
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import samplers
from repro_jax import settings as settings_lib
from repro_jax.analysis import descriptor as descriptor_lib
from repro_jax.analysis import metrics
from repro_jax.analysis import reproducibility as rpr
from repro_jax.networks import model_zoo
from repro_jax.networks import training
from repro_jax.studies import common

ZOO_VARIANTS = ("cpu", "cpu_full", "smoke", "paper")

# The zoo of each variant: residual MLPs with EDM preconditioning on the digits
# at CPU scale; the paper's U-Nets (DDPM ε-prediction, VP) on CIFAR-10.
_CPU_TRAIN = dict(
    data=dict(name="digits", path=""), model=dict(depth=3, emb_dim=64),
    diffusion=dict(parameterization="edm", schedule="vp"),
    optim=dict(learning_rate=1e-3, warmup_steps=100),
    train=dict(batch_size=64, num_steps=5000, log_every=500, checkpoint_every=2500,
               ema_decay=0.999, step_loop="scan", keep_checkpoints=1))
_ZOO_CHANGES = {
    "cpu": dict(seeds=(0, 1, 2)),
    "cpu_full": dict(widths=(128, 256, 512), sizes=(16, 32, 64, 128, 256, 512, 1024, 1797),
                     seeds=(0, 1, 2),
                     train=dict(train=dict(num_steps=10_000, checkpoint_every=1000))),
    "smoke": dict(widths=(16, 32), sizes=(8, 32),
                  train=dict(model=dict(depth=1, emb_dim=16), optim=dict(warmup_steps=2),
                             train=dict(batch_size=8, num_steps=20, log_every=10,
                                        checkpoint_every=10))),
}


def zoo_settings(variant: str = "cpu") -> model_zoo.ZooSettings:
  """The grid of trained models of a variant (shared by both zoo studies)."""
  if variant not in ZOO_VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(ZOO_VARIANTS)}.")
  if variant == "paper":
    train = settings_lib.override(training.variant("paper"), dict(
        data=dict(name="cifar10", path="", num_train=-1),
        diffusion=dict(parameterization="eps", schedule="vp"),
        train=dict(num_steps=200_000, step_loop="auto")))
    return model_zoo.ZooSettings(model="unet", widths=(64, 128, 256), seeds=(0, 1, 2),
                                 sizes=tuple(2**k for k in range(6, 16)), train=train)
  base = model_zoo.ZooSettings(train=settings_lib.override(training.variant("cpu"), _CPU_TRAIN))
  return settings_lib.override(base, _ZOO_CHANGES[variant], where="zoo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZooStudySettings:
  """The fields both zoo studies share: the zoo, the noises, the similarity."""
  seed: int = 0
  zoo: model_zoo.ZooSettings = dataclasses.field(default_factory=lambda: zoo_settings("cpu"))
  # The fixed noises every model starts from (saved with the results when small).
  noise_seed: int = 1
  num_noises: int = 1024
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  chunk: int = 256                  # noises per sampler call (all models of a width)
  # Similarity: pixel NCC, threshold calibrated on the training images.
  similarity: str = "ncc"
  calib_pairs: int = 2000
  calib_noise: float = 0.1          # std of the "copy" perturbation on the [−1, 1] scale
  calib_shift: int = 0              # circular shift of the copy (0 at 8×8)
  paper_threshold: float = 0.6      # the paper's SSCD threshold, for reference
  # A second, learned similarity (`analysis.descriptor`), trained on the data set
  # and calibrated the same way (kept under `<zoo.dir>/descriptors/`): sims["learned"].
  learned: bool = True
  descriptor: descriptor_lib.DescriptorSettings = dataclasses.field(
      default_factory=descriptor_lib.DescriptorSettings)
  mae_threshold: float = 15.0       # MAE score threshold on [0, 255]
  # Bootstrap intervals over the noises and the seeds (`analysis.bootstrap`).
  bootstrap_resamples: int = 1000
  ci_level: float = 0.95


def shared_changes(variant: str) -> dict:
  """The variant's zoo and the changes of the shared fields."""
  zoo = zoo_settings(variant)
  changes = dict(zoo=zoo)
  if zoo.model == "unet":
    changes["chunk"] = 64
  changes.update({"cpu": {}, "cpu_full": {},
                  "smoke": dict(num_noises=16, chunk=16, calib_pairs=200,
                                descriptor=dict(width=8, dim=16, steps=20, batch=32,
                                                warmup=5, chunk=10)),
                  "paper": dict(num_noises=10_000, calib_shift=2)}[variant])
  return changes


class ZooStudy(NamedTuple):
  """What a zoo study has once its models exist.

  `noise [B, ...]` are the fixed starting noises; `subsets {N: [N] indices}`
  the nested training subsets; `groups` one `model_zoo.Group` per width.
  """
  workdir: pathlib.Path
  t0: float
  progress: common.Progress
  ds: data_lib.Dataset
  sims: dict[str, metrics.Similarity]
  cal: metrics.Calibration
  noise: np.ndarray
  subsets: dict[int, np.ndarray]
  groups: list[model_zoo.Group]
  cal_learned: metrics.Calibration | None   # of sims["learned"] (None without it)


def setup(s: ZooStudySettings, workdir, key):
  """Dataset, similarities, fixed noises and subsets of a zoo study.

  Returns:
    `(dataset, sims {"cal", "paper"[, "learned"]}, calibration of "cal", noise [B, ...],
    subsets {N: [N]}, calibration of "learned" or None)`;
    small noise sets are saved in `workdir`, large ones under `zoo.dir`.
  """
  zoo = s.zoo
  ds = data_lib.load_dataset(zoo.train.data)
  sim, cal = rpr.calibrated_similarity(key, ds.x, s.similarity, num_pairs=s.calib_pairs,
                                       noise=s.calib_noise, max_shift=s.calib_shift)
  sims = {"cal": sim, "paper": metrics.get_similarity(s.similarity, s.paper_threshold)}
  cal_learned = None
  if s.learned:
    sims["learned"], cal_learned = descriptor_lib.learned_similarity(
        jax.random.fold_in(key, 1), ds.x, s.descriptor,
        cache_dir=pathlib.Path(zoo.dir) / "descriptors", num_pairs=s.calib_pairs,
        noise=s.calib_noise, max_shift=s.calib_shift)
  nbytes = 4 * s.num_noises * int(np.prod(ds.data_shape))
  path = (pathlib.Path(workdir) / "noises.npy" if nbytes <= rpr.NOISE_FILE_MAX_BYTES else
          pathlib.Path(zoo.dir) / f"noises_seed{s.noise_seed}_{s.num_noises}.npy")
  noise = rpr.fixed_noises(s.noise_seed, s.num_noises, ds.data_shape, path)
  subsets = model_zoo.nested_subsets(len(ds), zoo.sizes, zoo.subset_seed)
  return ds, sims, cal, noise, subsets, cal_learned


def begin(s: ZooStudySettings, ctx, later_steps: int) -> ZooStudy:
  """Calibrate the similarity, draw the noises and subsets (saved as
  `subsets.npz`), then train or restore the zoo.

  Progress is logged over `1 + len(zoo.widths) + later_steps` steps: this
  function takes the calibration and one per width; the study takes the rest.
  """
  t0 = time.time()
  zoo = s.zoo
  progress = ctx.progress(1 + len(zoo.widths) + int(later_steps))
  key = jax.random.key(s.seed)
  ds, sims, cal, noise, subsets, cal_learned = setup(s, ctx.workdir, jax.random.fold_in(key, 0))
  io.save_npz(ctx.workdir / "subsets.npz", **{f"N{n}": idx for n, idx in subsets.items()})
  progress.step("calibration")
  groups = model_zoo.ensure_zoo(zoo, ds, progress=progress)
  return ZooStudy(ctx.workdir, t0, progress, ds, sims, cal, noise, subsets, groups,
                  cal_learned)


def sample(den, noise, sigmas, *, sampler: str, chunk: int) -> np.ndarray:
  """Every model of `den` (one, or a stack of M) from the same noises, in
  batches of `chunk`: float32 `[B, ...]`, or `[M, B, ...]` for a stack."""
  return np.asarray(samplers.sample_batched(den, np.asarray(noise, np.float32), sigmas,
                                            sampler=sampler, batch_size=int(chunk)).samples)
