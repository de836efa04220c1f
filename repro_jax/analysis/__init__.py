"""Measurements that several studies share.

What belongs here: metrics of samples and models (`metrics`: RP, MAE, GL and
their similarities; `score_metrics`: score error against an exact score;
`distribution_metrics`: distances to a known law), the noise plane of the
reproducibility paper (`noise_plane`), the pairwise reproducibility of a
zoo of trained models (`reproducibility`), bootstrap intervals of those scores
over noises and seeds (`bootstrap`) and the scores as functions of their
threshold (`score_curves`).  A new metric goes here; a
measurement only one study makes stays in that study's own module.

May import: `repro_jax.closed_form`, `repro_jax.diffusion`, `repro_jax.samplers`,
`repro_jax.networks`, `repro_jax.data`, `repro_jax.io`, `repro_jax.validation`;
never `repro_jax.studies`.
"""
