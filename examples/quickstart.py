"""Quickstart: the ideal denoiser of a training set only reproduces training images.

    python examples/quickstart.py [figure.png]      # default: ./quickstart.png

Samples the closed-form empirical denoiser `E[x0 | x = x0 + σ ε]` of the 8×8
digits (`[N, 8, 8, 1]` in [−1, 1]) with two deterministic samplers, DDIM and
Heun, from the same noise: every sample is a copy of a training image
(Theorem 1, docs/theory.md §4).  Both samplers discretize one ODE, so they
mostly reach the same image; a noise near the boundary of two images' basins
may land on different ones after few steps.  Figure rows: DDIM samples, Heun
samples, the training images nearest to the Heun samples.
"""

import sys

import jax
import numpy as np

from repro_jax import data, samplers
from repro_jax.analysis import metrics
from repro_jax.diffusion import denoiser

train, _ = data.load_digits()                               # [N, 8, 8, 1] in [−1, 1]
den = denoiser.empirical(train)                             # x0 head, x = x0 + σ ε
sigmas = samplers.make_sigmas(schedule="edm", steps=18)     # [T+1]: 80 → 0.002 → 0
z = jax.random.normal(jax.random.key(0), (8, *train.shape[1:]))   # one noise [B, 8, 8, 1]
runs = {name: samplers.sample_batched(den, z, sigmas, sampler=name).samples
        for name in ("ddim", "heun")}                       # deterministic: no key needed
near = {name: metrics.nearest_train(x, train) for name, x in runs.items()}
for name, nn in near.items():
  print(f"{name}: {int(np.sum(nn.distance < 1e-3))}/{len(z)} samples are copies of training "
        f"images (max distance to the nearest: {float(nn.distance.max()):.1e})")
same = int(np.sum(near["ddim"].index == near["heun"].index))
print(f"ddim and heun reach the same training image from {same}/{len(z)} noises")
figure = sys.argv[1] if len(sys.argv) > 1 else "quickstart.png"
samplers.save_image_grid(figure, np.concatenate(
    [runs["ddim"], runs["heun"], train[near["heun"].index]]), cols=len(z))
print(f"wrote {figure}")
