"""Closed-form denoisers and the geometry of the training set.

What belongs here: posterior means known in closed form (empirical, Gaussian,
Gaussian mixture, MoLRG in `denoisers`; the low-rank + diagonal Gaussian in
`gaussian_lowrank`), the closed forms proposed to explain generalization (the
local / equivariant-local patch machines and patch-posterior composites in
`patch`, streamed by `patch_streaming`; the smoothed closed-form score in
`smoothed`), the distances and projections onto finite sets and unions of
subspaces, the smoothed distance (`geometry`), and the streaming log-sum-exp /
nearest-neighbour kernels they are built on (`streaming`).

May import: `repro_jax.validation`, `repro_jax.diffusion.heads`.
"""
