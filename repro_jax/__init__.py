"""repro_jax: closed-form denoisers, samplers and experiments that verify why
diffusion models reproduce, memorize and generalize.

Layout, by role (each package's docstring says what belongs there and what it
may import):

- `diffusion/`: the forward process (schedules, σ grids), Tweedie heads and
  the canonical denoiser interface every sampler and metric consumes;
- `closed_form/`: analytic denoisers (empirical, Gaussian, GMM, MoLRG), the
  smoothed distance and the streaming kernels behind them;
- `samplers/`: samplers, inversion and batched sampling;
- `networks/`: architectures, training, the zoo of trained models;
- `lowrank/`: low-rank denoisers on MoLRG data and subspace clustering;
- `analysis/`: metrics and measurements several studies share;
- `studies/`: one module per experiment (settings, measure, verdicts, report)
  and the runner of the main job;
- top level: `settings` (typed frozen settings), `io` (atomic writes),
  `plotting`, `sharding` (the one device mesh), `validation`, `data`.

Noise convention (docs/theory.md §0): `x_t = s_t (x0 + σ_t ε)`; the low-dim talk's
`(α_t, β_t) = (s_t, s_t σ_t)`; DDIM's `ᾱ_t = 1 / (1 + σ_t²)`.
"""

from repro_jax.diffusion import heads
from repro_jax import samplers
from repro_jax.diffusion import schedules
from repro_jax.closed_form.denoisers import GaussianMixture
from repro_jax.closed_form.denoisers import empirical_denoiser
from repro_jax.closed_form.denoisers import gaussian_denoiser
from repro_jax.closed_form.denoisers import gmm_denoiser
from repro_jax.closed_form.denoisers import molrg_denoiser
from repro_jax.closed_form.denoisers import molrg_posterior_weights
from repro_jax.closed_form.denoisers import random_molrg_bases
from repro_jax.closed_form.denoisers import sample_molrg
from repro_jax.closed_form.geometry import dist_finite
from repro_jax.closed_form.geometry import dist_subspaces
from repro_jax.closed_form.geometry import nearest_neighbors
from repro_jax.closed_form.geometry import proj_finite
from repro_jax.closed_form.geometry import proj_subspaces
from repro_jax.closed_form.geometry import smoothed_sq_distance
from repro_jax.diffusion.schedules import get_schedule
from repro_jax.diffusion.schedules import sigma_grid

__version__ = "0.1.0"
