"""Trainable denoisers: architectures, training, and the zoo of trained models.

What belongs here: Flax NNX architectures and their training
parameterizations (`models`; a new network goes there and in its registry),
the training stack (`training`: jitted steps, data parallelism, orbax
checkpoints, many models in one vmapped program) and the model zoo
(`model_zoo`: grids of trained models reused by several studies).

May import: `repro_jax.diffusion`, `repro_jax.data`, `repro_jax.samplers`,
`repro_jax.io`, `repro_jax.sharding`, `repro_jax.validation`; never
`repro_jax.analysis` or `repro_jax.studies`.
"""
