"""Former home of the canonical denoiser, kept while studies still import it.

Everything lives in `repro_jax.diffusion.denoiser`; `empirical` and `molrg`
remain importable from here only until `repro_jax.studies` and
`repro_jax.analysis.reproducibility` switch to that module.
"""

from repro_jax.diffusion.denoiser import empirical
from repro_jax.diffusion.denoiser import molrg

__all__ = ["empirical", "molrg"]
