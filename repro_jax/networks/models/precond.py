"""Training parameterizations: what the network predicts, its loss, its wrap.

A network is any `net(x_in [B, ...], c [B]) -> [B, ...]` (labels and dropout
closed over).  A `Parameterization` gives

(a) the noise-level distribution and the per-example training loss
    `loss(net, x0 [B, ...], key) -> [B]`, and
(b) the canonical sampler interface `denoiser(net) -> Denoiser`,
    `denoise(x [B, ...], σ [B]) -> x0` in VE coordinates (`x = x0 + σ ε`),
    built by the one network wrap `repro_jax.diffusion.denoiser.from_model`.

Kinds (docs/theory.md §0, kernel `x_t = s_t (x0 + σ_t ε)`):

- `eps`: `x_t` from a schedule (VP, DDPM, VE, ...), `t ~ U[t_min, t_max]`
  (uniform integers for discrete schedules; drawn as `Φ(z)`, z standard
  normal); the net predicts ε (head `eps`), loss `‖F − ε‖²`.
- `x0`: same kernel; the net predicts x0 (head `x0`), loss `‖F − x0‖²`.
- `v` (Salimans & Ho 2022): same kernel; the net predicts the velocity
  `v = a ε − b x0`, `a = 1/√(1+σ²)`, `b = σ/√(1+σ²)` (head `v`), loss
  `‖F − v‖²`; its wrap is `x0 = a² x_t/s − b F`.
- `edm` (Karras et al. 2022): `s = 1`, `log σ ~ N(P_mean, P_std²)`;
  `D = c_skip x + c_out F(c_in x, c_noise)` with `c_skip = σd²/(σ²+σd²)`,
  `c_out = σ σd/√(σ²+σd²)`, `c_in = 1/√(σ²+σd²)`, `c_noise = ¼ log σ`; the
  weighted loss `λ(σ)‖D − x0‖²`, `λ = 1/c_out²`, equals `‖F − (x0 − c_skip x)/c_out‖²`.

Conditioning `c` (`denoiser.conditioning`): for eps/x0/v `time_input="t"` →
`1000 (t − t_min)/(t_max − t_min)` (suits the sinusoidal embedding) or
`"log_sigma"` → `¼ log σ` (suits Fourier); edm always `¼ log σ`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from repro_jax import validation
from repro_jax.diffusion import denoiser as denoiser_lib
from repro_jax.diffusion import heads
from repro_jax.diffusion import schedules as schedules_lib
from repro_jax.diffusion.denoiser import TIME_INPUTS
from repro_jax.diffusion.heads import bcast

PARAMETERIZATIONS = ("eps", "x0", "v", "edm")
Net = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _per_example_mse(a, b):
  return jnp.mean(jnp.square(a - b).reshape(a.shape[0], -1), axis=-1)


@dataclasses.dataclass(frozen=True)
class Parameterization:
  """One of `eps`, `x0`, `v`, `edm` (frozen: a static argument of jitted code).

  Attributes:
    kind: `"eps"`, `"x0"`, `"v"` or `"edm"`.
    schedule: the kernel for eps/x0/v (ignored by edm, which is VE with s = 1).
    time_input: conditioning of eps/x0/v nets, `"t"` or `"log_sigma"`.
    sigma_data: EDM's σ_data.
    p_mean, p_std: EDM's log-normal σ distribution.
  """

  kind: str = "eps"
  schedule: schedules_lib.Schedule = dataclasses.field(default_factory=schedules_lib.VP)
  time_input: str = "t"
  sigma_data: float = 0.5
  p_mean: float = -1.2
  p_std: float = 1.2

  def __post_init__(self):
    if self.kind not in PARAMETERIZATIONS:
      raise validation.unknown_name("parameterization", self.kind, PARAMETERIZATIONS)
    if self.time_input not in TIME_INPUTS:
      raise validation.unknown_name("time_input", self.time_input, TIME_INPUTS)
    if self.sigma_data <= 0 or self.p_std <= 0:
      raise ValueError("sigma_data and p_std must be > 0.")

  # (a) training ---------------------------------------------------------------
  def sample_time(self, level):
    """Training noise levels from standard normals `level [B]`: `(t, σ, s)`, each `[B]`.

    edm: `σ = exp(P_mean + P_std·level)` (t = σ, s = 1); eps/x0/v:
    `u = Φ(level)` is uniform, `t = t_min + u (t_max − t_min)` (integers
    `⌊u T⌋` for discrete schedules).
    """
    if self.kind == "edm":
      sigma = jnp.exp(self.p_mean + self.p_std * level)
      return sigma, sigma, jnp.ones_like(sigma)
    sch = self.schedule
    u = jax.scipy.special.ndtr(level)
    if sch.discrete:
      n = int(sch.t_max - sch.t_min) + 1
      t = sch.t_min + jnp.minimum(jnp.floor(u * n), n - 1)
    else:
      t = sch.t_min + u * (sch.t_max - sch.t_min)
    return t, sch.sigma(t), sch.scale(t)

  def net_input_time(self, t, sigma):
    """The network's conditioning scalar `c [B]` at the training draw `(t, σ)`."""
    time_input = "log_sigma" if self.kind == "edm" else self.time_input
    return denoiser_lib.conditioning(self.schedule, sigma, time_input, t=t)

  def edm_coeffs(self, sigma):
    """`(c_skip, c_out, c_in)` for σ `[B]`."""
    sd2 = self.sigma_data**2
    denom = jnp.sqrt(jnp.square(sigma) + sd2)
    return sd2 / (jnp.square(sigma) + sd2), sigma * self.sigma_data / denom, 1.0 / denom

  def loss(self, net: Net, x0, key):
    """Per-example loss `[B]` for a clean batch `x0 [B, ...]` (one RNG draw)."""
    d = x0[0].size
    z = jax.random.normal(key, (x0.shape[0], d + 1), x0.dtype)
    return self.loss_given_noise(net, x0, z[:, :d].reshape(x0.shape), z[:, d])

  def loss_given_noise(self, net: Net, x0, eps, level):
    """Per-example loss `[B]` given the noise `eps [B, ...]` and normals `level [B]`.

    Taking the draws as inputs lets a train step make one RNG call per step.
    """
    t, sigma, scale = self.sample_time(level)
    c = self.net_input_time(t, sigma)
    if self.kind == "edm":
      c_skip, c_out, c_in = self.edm_coeffs(sigma)
      x = x0 + bcast(sigma, x0) * eps
      target = (x0 - bcast(c_skip, x0) * x) / bcast(c_out, x0)
      return _per_example_mse(net(bcast(c_in, x0) * x, c), target)
    x_t = bcast(scale, x0) * (x0 + bcast(sigma, x0) * eps)
    if self.kind == "v":
      target = heads.v_from_x0_eps(x0, eps, sigma)
    else:
      target = eps if self.kind == "eps" else x0
    return _per_example_mse(net(x_t, c), target)

  # (b) sampling ---------------------------------------------------------------
  def denoiser(self, net: Net) -> denoiser_lib.Denoiser:
    """Canonical `denoise(x [B, ...], σ [B]) -> x0` (VE coordinates) of `net`."""
    if self.kind == "edm":
      return denoiser_lib.from_model(net, schedules_lib.EDM(), "x0", time_input="log_sigma",
                                     preconditioning=self.edm_coeffs)
    return denoiser_lib.from_model(net, self.schedule, self.kind, time_input=self.time_input)


def get_parameterization(kind: str, schedule: str = "vp", *, schedule_options=None,
                         **kwargs) -> Parameterization:
  """Build a parameterization by name, its schedule by registry name."""
  if kind not in PARAMETERIZATIONS:
    raise validation.unknown_name("parameterization", kind, PARAMETERIZATIONS)
  sch = schedules_lib.get_schedule(schedule, **dict(schedule_options or {}))
  return Parameterization(kind=kind, schedule=sch, **kwargs)
