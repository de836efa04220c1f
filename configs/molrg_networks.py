"""Memorization → generalization of trained denoisers on a MoLRG (THEORY.md §4).

Variants: `cpu` (default: 24 MLP cells in one vmapped program + a 4-cell U-Net
check; a few minutes on 2 CPU cores), `smoke` (seconds, for tests), `paper`
(GPU: U-Net and MLP on the full, finer grid with 3 seeds).

Run:
  python -m experiments.molrg_networks --config=configs/molrg_networks.py:cpu \
      --workdir=results/molrg_networks
"""

import ml_collections

VARIANTS = ("cpu", "smoke", "paper")


def _arch(**kw) -> ml_collections.ConfigDict:
  """Training settings of one architecture (fed to configs/train.py)."""
  c = ml_collections.ConfigDict(dict(
      model="mlp", hidden=128, depth=2, emb_dim=32,
      width=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), norm_groups=8,
      # x0-prediction (the talk's x_θ ≈ E[x0 | x_t]) on the VP SDE: its samples
      # land on the support to ~2% where ε/EDM nets of this size leave 10–50%.
      parameterization="x0", schedule="vp", sigma_data=0.5, p_mean=-1.2, p_std=1.2,
      learning_rate=1e-3, warmup_steps=100, batch_size=64, num_steps=3000,
      log_every=500, ema_decay=0.999))
  c.update(kw)
  return c


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}.")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dim = 48
  c.num_components = 2
  c.image_shape = (4, 4, 3)        # the U-Net's view of a 48-D point
  c.ranks = (2, 4, 6, 8)           # r of every component
  c.ns = (8, 16, 32, 64, 128, 256)  # N, total over the components
  c.num_seeds = 1
  c.exponent_range = (0.5, 1.5)    # "N* ∝ r": fitted log-log exponent in this range

  c.mlp = _arch()
  # U-Net: trained only at `cells` ((r, N) pairs); every cell also has an MLP.
  c.unet = _arch(model="unet", num_steps=600, log_every=200, learning_rate=2e-3)
  c.unet.enabled = True
  c.unet.cells = ((2, 8), (2, 32), (8, 32), (8, 256))
  c.unet.num_seeds = 1

  c.eval = ml_collections.ConfigDict(dict(
      # σ_min = σ_VP(t_min) ≈ 0.01, the smallest level the nets are trained on.
      num_samples=256, sampler="heun", steps=18, sigma_min=0.01, sigma_max=10.0,
      support_tol=0.2, copy_ratio=1.0 / 3.0,
      score_samples=512, score_sigma_min=0.01, score_sigma_max=10.0, score_sigmas=8))

  if variant == "smoke":
    c.ranks = (2, 3)
    c.ns = (2, 16)
    c.dim = 12
    c.image_shape = (2, 2, 3)
    c.mlp.update(hidden=32, emb_dim=8, num_steps=300, log_every=150, warmup_steps=10,
                 batch_size=32, learning_rate=3e-3, ema_decay=0.99)
    # The second architecture is exercised on the image view, but as an MLP: a
    # U-Net costs ~40 s of XLA:CPU compilation (tests/test_training.py covers it).
    c.unet.update(model="mlp", hidden=16, emb_dim=8, num_steps=20, log_every=20,
                  warmup_steps=1, batch_size=8)
    c.unet.cells = ((2, 16),)
    c.eval.update(num_samples=32, steps=4, score_samples=64, score_sigmas=4)
  elif variant == "paper":
    c.ranks = (2, 4, 6, 8, 10, 12)
    c.ns = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
    c.num_seeds = 3
    c.mlp.update(hidden=256, depth=3, emb_dim=64, num_steps=20_000, batch_size=256,
                 log_every=1000)
    c.unet.update(width=64, ch_mult=(1, 2), attn_resolutions=(2,), num_steps=20_000,
                  batch_size=256, log_every=1000)
    c.unet.cells = tuple((r, n) for r in c.ranks for n in c.ns)
    c.unet.num_seeds = 3
    c.eval.update(num_samples=1024, score_samples=4096, score_sigmas=16)
  return c
