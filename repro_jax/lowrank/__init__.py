"""Low-rank learning on mixtures of low-rank Gaussians (the low-dim talk, §4).

What belongs here: the parameterized low-rank (K = 1) and mixture (K > 1)
denoisers and their Riemannian training (`model`), Stiefel-manifold geometry
(`stiefel`), padded (seed, N, r) grids of MoLRG training sets (`molrg_grid`)
and the subspace-clustering baselines they are compared with (`clustering`).

May import: `repro_jax.closed_form`, `repro_jax.diffusion`,
`repro_jax.validation`; never `repro_jax.analysis` or `repro_jax.studies`.
"""
