"""Reproducibility regimes with trained networks (paper Fig. 1, 2, 4, 6).

Run:
  python -m experiments.reproducibility_regimes \
      --config=configs/reproducibility_regimes.py:cpu \
      --workdir=results/reproducibility_regimes

Variants:
- `cpu` (default): residual-MLP denoisers of hidden width 128 and 256 (EDM
  preconditioning) on 8×8 digits, N ∈ {16, 64, 256, 1024, 1797}, two seeds
  per width, 5000 steps of batch 64.  Measured 17 min on a 2-core machine
  shared at load ≈ 5 (training 16 min of it; expect roughly half when idle);
  about 1–2 min once the models are in `zoo.dir`.
- `cpu_full` (a few hours): widths 128/256/512, N = 2^4 … 2^10 and 1797,
  10 000 steps, 1024 noises.
- `smoke` (seconds, tests): tiny widths, two sizes, 20 steps.
- `paper`: the paper's grid, U-Net widths 64/128/256 (DDPM ε-prediction, VP)
  on CIFAR-10 N = 2^6 … 2^15, 10 000 noises; needs
  `--config.zoo.data.path=<cifar-10-batches-py>` and an accelerator.

The trained models are kept under `zoo.dir` (git-ignored `workdirs/`) and
reused by `reproducibility_across_samplers`.
"""

import ml_collections

VARIANTS = ("cpu", "cpu_full", "smoke", "paper")


def zoo_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  """The grid of trained models (shared with reproducibility_across_samplers)."""
  z = ml_collections.ConfigDict()
  z.dir = "workdirs/repro_zoo"      # trained groups, outside results/
  z.train_variant = "cpu"           # base variant of configs/train.py
  z.model = "mlp"                   # mlp (width = hidden) | unet (width = channels)
  z.widths = (128, 256)
  z.sizes = (16, 64, 256, 1024, 1797)
  z.seeds = (0, 1)
  z.subset_seed = 0                 # one nested subset per N, shared by all models
  z.data = ml_collections.ConfigDict(dict(name="digits", path=""))
  # Nested overrides of configs/train.py (the model width comes from `widths`).
  z.train = ml_collections.ConfigDict(dict(
      model=dict(depth=3, emb_dim=64),
      diffusion=dict(parameterization="edm", schedule="vp"),
      optim=dict(learning_rate=1e-3, warmup_steps=100),
      train=dict(batch_size=64, num_steps=5000, log_every=500, checkpoint_every=2500,
                 ema_decay=0.999, step_loop="scan", keep_checkpoints=1)))
  if variant == "cpu":
    pass
  elif variant == "cpu_full":
    z.widths = (128, 256, 512)
    z.sizes = (16, 32, 64, 128, 256, 512, 1024, 1797)
    z.train.train.update(num_steps=10_000, checkpoint_every=1000)
  elif variant == "smoke":
    z.widths = (16, 32)
    z.sizes = (8, 32)
    z.train.model.update(depth=1, emb_dim=16)
    z.train.optim.warmup_steps = 2
    z.train.train.update(batch_size=8, num_steps=20, log_every=10, checkpoint_every=10)
  elif variant == "paper":
    z.train_variant = "paper"
    z.model = "unet"
    z.widths = (64, 128, 256)
    z.sizes = tuple(2**k for k in range(6, 16))
    z.data = ml_collections.ConfigDict(dict(name="cifar10", path=""))
    z.train = ml_collections.ConfigDict(dict(
        diffusion=dict(parameterization="eps", schedule="vp"),
        train=dict(num_steps=200_000, step_loop="auto")))
  else:
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}.")
  return z


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.zoo = zoo_config(variant)
  # The fixed noises every model starts from (saved with the results when small).
  c.noise_seed = 1
  c.num_noises = 256
  # Deterministic sampler: Heun on the EDM ρ-grid (2·steps − 1 evaluations).
  c.sampler = "heun"
  c.steps = 18
  c.sigma_min = 0.002
  c.sigma_max = 80.0
  c.chunk = 256                     # noises per sampler call (all models of a width)
  # Similarity: pixel NCC, threshold calibrated on the training images.
  c.similarity = "ncc"
  c.calib_pairs = 2000
  c.calib_noise = 0.1               # std of the "copy" perturbation on the [−1, 1] scale
  c.calib_shift = 0                 # circular shift of the copy (0 at 8×8)
  c.paper_threshold = 0.6           # the paper's SSCD threshold, for reference
  c.mae_threshold = 15.0            # MAE score threshold on [0, 255]
  # Regime bands, from the measured GL and RP-to-theory.
  c.band_gl_mem = 0.1
  c.band_rp_theory_mem = 0.5
  c.band_gl_gen = 0.9
  # Figures.
  c.grid_columns = 8                # Fig. 1: noises per row
  c.plane_grid = 40                 # Fig. 4: points per axis
  c.plane_size_index = 1            # Fig. 4: zoo.sizes[i] of the memorizing row
  if c.zoo.model == "unet":
    c.chunk = 64
  if variant == "cpu_full":
    c.num_noises = 1024
    c.plane_grid = 64
  elif variant == "smoke":
    c.num_noises = 16
    c.chunk = 16                    # plane noises (28) run in chunks of the same shape
    c.steps = 6
    c.calib_pairs = 200
    c.grid_columns = 4
    c.plane_grid = 5
    c.plane_size_index = 0
  elif variant == "paper":
    c.num_noises = 10_000
    c.calib_shift = 2
    c.plane_grid = 100
    c.plane_size_index = 2
  return c
