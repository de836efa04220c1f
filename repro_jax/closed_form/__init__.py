"""Closed-form denoisers and the geometry of the training set.

What belongs here: posterior means known in closed form (empirical, Gaussian,
Gaussian mixture, MoLRG; a new analytic denoiser goes in `denoisers`), the
distances and projections onto finite sets and unions of subspaces, the
smoothed distance (`geometry`), and the streaming log-sum-exp / nearest-
neighbour kernels both are built on (`streaming`).

May import: `repro_jax.validation`, `repro_jax.diffusion.heads`.
"""
