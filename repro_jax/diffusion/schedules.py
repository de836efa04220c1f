"""Noise schedules and sampling grids.

Convention (docs/theory.md §0): every schedule is a forward kernel

    x_t = s_t (x0 + σ_t ε),   ε ~ N(0, I),

described by the scale `s_t` and the noise-to-signal level `σ_t`.  The other
parameterizations follow from these two numbers:

- low-dim talk:  `α_t = s_t`, `β_t = s_t σ_t`;
- DDIM / DDPM:   `ᾱ_t = 1 / (1 + σ_t²)` (the VP kernel with the same σ);
- log-SNR:       `λ_t = −2 log σ_t`.

Schedules are frozen dataclasses (hashable, so they can be static arguments of
`jax.jit`); their methods are pure `jnp` functions of `t`.  Pick one by name with
`get_schedule(name, **overrides)`.

Sampling grids are decreasing arrays of σ of length `steps + 1`; the last entry
is 0 (`final="zero"`, denoise at the end) or σ at `t_min` (`final="min"`).

Every schedule checks its fields when it is built (`get_schedule` overrides
included): finite `t_min < t_max` in the schedule's domain, σ ranges with
`0 < sigma_lo < sigma_hi`, `0 <= beta_min < beta_max`, `0 < beta_start <=
beta_end < 1`, an integer `num_timesteps >= 2`; a bad field raises
`ValueError` naming it.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import typing

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import validation

Array = jnp.ndarray


def alpha_beta(scale, sigma):
  """`(s, σ)` → the low-dim talk's `(α, β) = (s, s σ)`."""
  return scale, scale * sigma


def alpha_bar_of_sigma(sigma):
  """DDIM's `ᾱ` for noise-to-signal level σ: `1 / (1 + σ²)`."""
  return 1.0 / (1.0 + jnp.square(sigma))


def sigma_of_alpha_bar(alpha_bar):
  """Inverse of `alpha_bar_of_sigma`: `σ = sqrt((1 − ᾱ) / ᾱ)`."""
  return jnp.sqrt((1.0 - alpha_bar) / alpha_bar)


def log_snr_of_sigma(sigma):
  """`λ = log(s² / (s σ)²) = −2 log σ`."""
  return -2.0 * jnp.log(sigma)


@dataclasses.dataclass(frozen=True)
class Schedule(abc.ABC):
  """Abstract base: a kernel `x_t = s(t) (x0 + σ(t) ε)` on `t ∈ [t_min, t_max]`.

  Subclasses set the class attribute `name` and define `sigma(t)`, `scale(t)`
  and `t_of_sigma(σ)`; σ is increasing in t.  `discrete` schedules take
  integer t in `[0, T − 1]` but interpolate log σ linearly in between, so
  `t_of_sigma` is defined for every σ in range.
  """

  name: typing.ClassVar[str]

  t_min: float = 0.0
  t_max: float = 1.0

  discrete = False

  def __post_init__(self):
    self._validate()

  def _validate(self):
    """Raise ValueError naming a bad field (subclasses add their own checks)."""
    lo = validation.check_number(self.t_min, "t_min", lo=self._t_floor()[0],
                                 lo_open=self._t_floor()[1])
    validation.check_number(self.t_max, "t_max")
    if not lo < float(self.t_max):
      raise ValueError(f"{self.name!r} needs t_min < t_max; got t_min = {self.t_min!r}, "
                       f"t_max = {self.t_max!r}.")

  def _t_floor(self):
    """`(bound, open)`: t_min must be >= bound (> bound if open)."""
    return 0.0, False

  @abc.abstractmethod
  def sigma(self, t) -> Array:
    """Noise-to-signal level σ(t)."""

  @abc.abstractmethod
  def scale(self, t) -> Array:
    """Kernel scale s(t)."""

  @abc.abstractmethod
  def t_of_sigma(self, sigma) -> Array:
    """Inverse of `sigma(t)`."""

  # Derived quantities --------------------------------------------------------
  def alpha_beta(self, t):
    """`(α_t, β_t) = (s_t, s_t σ_t)` (low-dim talk notation)."""
    return alpha_beta(self.scale(t), self.sigma(t))

  def alpha_bar(self, t) -> Array:
    """DDIM's `ᾱ_t = 1 / (1 + σ_t²)`."""
    return alpha_bar_of_sigma(self.sigma(t))

  def log_snr(self, t) -> Array:
    return log_snr_of_sigma(self.sigma(t))

  def scale_of_sigma(self, sigma) -> Array:
    """`s` at the time where the schedule reaches σ."""
    return self.scale(self.t_of_sigma(sigma))

  def sigma_np(self, t) -> np.ndarray:
    """σ(t) evaluated in float64 on the host (for building grids)."""
    with jax.enable_x64(True):
      return np.asarray(self.sigma(jnp.asarray(t, jnp.float64)), np.float64)

  @property
  def sigma_min(self) -> float:
    return float(self.sigma_np(self.t_min))

  @property
  def sigma_max(self) -> float:
    return float(self.sigma_np(self.t_max))


def _check_sigma_range(schedule):
  lo = validation.check_number(schedule.sigma_lo, "sigma_lo", lo=0.0, lo_open=True)
  hi = validation.check_number(schedule.sigma_hi, "sigma_hi")
  if not lo < hi:
    raise ValueError(f"{schedule.name!r} needs 0 < sigma_lo < sigma_hi; got "
                     f"{schedule.sigma_lo!r}, {schedule.sigma_hi!r}.")


def _vp_integral(t, beta_min, beta_max):
  """`∫_0^t β(u) du` for the linear VP β(t)."""
  return 0.5 * jnp.square(t) * (beta_max - beta_min) + t * beta_min


def _vp_integral_inverse(value, beta_min, beta_max):
  """t with `∫_0^t β = value` (root of a quadratic)."""
  d = beta_max - beta_min
  return (-beta_min + jnp.sqrt(beta_min**2 + 2.0 * d * value)) / d


@dataclasses.dataclass(frozen=True)
class VP(Schedule):
  """Continuous VP-SDE (score_sde): `ᾱ(t) = exp(−∫β)`, `s = sqrt(ᾱ)`."""

  beta_min: float = 0.1
  beta_max: float = 20.0
  t_min: float = 1e-3
  t_max: float = 1.0
  name = "vp"

  def _validate(self):
    lo = validation.check_number(self.beta_min, "beta_min", lo=0.0)
    hi = validation.check_number(self.beta_max, "beta_max")
    if not lo < hi:
      raise ValueError(f"{self.name!r} needs 0 <= beta_min < beta_max; got "
                       f"{self.beta_min!r}, {self.beta_max!r}.")
    super()._validate()

  def _t_floor(self):
    return 0.0, True            # σ(0) = 0

  def sigma(self, t):
    return jnp.sqrt(jnp.expm1(_vp_integral(t, self.beta_min, self.beta_max)))

  def scale(self, t):
    return jnp.exp(-0.5 * _vp_integral(t, self.beta_min, self.beta_max))

  def t_of_sigma(self, sigma):
    return _vp_integral_inverse(jnp.log1p(jnp.square(sigma)), self.beta_min,
                                self.beta_max)


@dataclasses.dataclass(frozen=True)
class SubVP(VP):
  """sub-VP SDE: mean `sqrt(ᾱ) x0`, std `1 − ᾱ`; so `σ = (1 − ᾱ)/sqrt(ᾱ)`.

  Same β(t) and options as `VP`, whose `ᾱ(t)` it shares.
  """

  name = "subvp"

  def _alpha_bar(self, t):
    return jnp.exp(-_vp_integral(t, self.beta_min, self.beta_max))

  def sigma(self, t):
    a = self._alpha_bar(t)
    return -jnp.expm1(-_vp_integral(t, self.beta_min, self.beta_max)) / jnp.sqrt(a)

  def scale(self, t):
    return jnp.sqrt(self._alpha_bar(t))

  def t_of_sigma(self, sigma):
    # σ sqrt(a) = 1 − a with u = sqrt(a): u² + σ u − 1 = 0.
    u = 2.0 / (sigma + jnp.sqrt(jnp.square(sigma) + 4.0))
    return _vp_integral_inverse(-2.0 * jnp.log(u), self.beta_min, self.beta_max)


@dataclasses.dataclass(frozen=True)
class Cosine(Schedule):
  """Cosine schedule (Nichol & Dhariwal): `ᾱ(t) = cos²(π/2 (t+c)/(1+c)) / cos²(π/2 c/(1+c))`.

  `t_max` is where `ᾱ` reaches `alpha_bar_min` (ᾱ → 0 at t = 1 would make σ
  infinite).
  """

  offset: float = 0.008
  alpha_bar_min: float = 1e-4
  t_min: float = 1e-3
  name = "cosine"

  def __post_init__(self):
    validation.check_number(self.offset, "offset", lo=0.0)
    validation.check_number(self.alpha_bar_min, "alpha_bar_min", lo=0.0, hi=1.0,
                            lo_open=True, hi_open=True)
    c0 = math.cos(0.5 * math.pi * self.offset / (1 + self.offset))**2
    theta = math.acos(math.sqrt(self.alpha_bar_min * c0))
    object.__setattr__(self, "t_max",
                       2 * theta * (1 + self.offset) / math.pi - self.offset)
    self._validate()

  def _t_floor(self):
    return 0.0, True            # σ(0) = 0

  def _alpha_bar(self, t):
    c = self.offset
    c0 = jnp.cos(0.5 * jnp.pi * c / (1 + c))**2
    return jnp.cos(0.5 * jnp.pi * (t + c) / (1 + c))**2 / c0

  def sigma(self, t):
    return sigma_of_alpha_bar(self._alpha_bar(t))

  def scale(self, t):
    return jnp.sqrt(self._alpha_bar(t))

  def t_of_sigma(self, sigma):
    c = self.offset
    c0 = jnp.cos(0.5 * jnp.pi * c / (1 + c))**2
    theta = jnp.arccos(jnp.sqrt(alpha_bar_of_sigma(sigma) * c0))
    return 2 * theta * (1 + c) / jnp.pi - c


@dataclasses.dataclass(frozen=True)
class VE(Schedule):
  """VE-SDE: `s = 1`, `σ(t) = σ_min (σ_max/σ_min)^t`, `t ∈ [0, 1]`."""

  sigma_lo: float = 0.01
  sigma_hi: float = 50.0
  t_min: float = 0.0
  t_max: float = 1.0
  name = "ve"

  def _validate(self):
    _check_sigma_range(self)
    super()._validate()

  def sigma(self, t):
    return self.sigma_lo * (self.sigma_hi / self.sigma_lo)**t

  def scale(self, t):
    return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float)))

  def t_of_sigma(self, sigma):
    return jnp.log(sigma / self.sigma_lo) / math.log(self.sigma_hi / self.sigma_lo)


@dataclasses.dataclass(frozen=True)
class EDM(Schedule):
  """EDM (Karras et al.): `s = 1`, `σ(t) = t`, `t ∈ [0.002, 80]`."""

  t_min: float = 0.002
  t_max: float = 80.0
  name = "edm"

  def _t_floor(self):
    return 0.0, True            # σ = t > 0

  def sigma(self, t):
    return jnp.asarray(t, dtype=jnp.result_type(float))

  def scale(self, t):
    return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float)))

  def t_of_sigma(self, sigma):
    return jnp.asarray(sigma)


@dataclasses.dataclass(frozen=True)
class _Discrete(Schedule):
  """Shared logic of the tabulated schedules: `T` levels at t ∈ {0..T−1},
  log σ interpolated in between."""

  num_timesteps: int = 1000
  t_min: float = 0.0
  t_max: float = 999.0        # set to T − 1 from num_timesteps
  discrete = True

  def __post_init__(self):
    validation.check_int(self.num_timesteps, "num_timesteps", minimum=2)
    object.__setattr__(self, "t_max", float(self.num_timesteps - 1))
    self._validate()

  @abc.abstractmethod
  def _log_sigmas(self) -> np.ndarray:
    """The table `log σ_i`, `[T]`, float64, increasing."""

  def sigma(self, t):
    ls = jnp.asarray(self._log_sigmas())
    return jnp.exp(jnp.interp(t, jnp.arange(ls.shape[0], dtype=ls.dtype), ls))

  def t_of_sigma(self, sigma):
    ls = jnp.asarray(self._log_sigmas())
    return jnp.interp(jnp.log(sigma), ls, jnp.arange(ls.shape[0], dtype=ls.dtype))

  def sigma_np(self, t) -> np.ndarray:
    # Host-side NumPy: no compilation per grid length.
    ls = self._log_sigmas()
    return np.exp(np.interp(np.asarray(t, np.float64), np.arange(ls.shape[0]), ls))


@dataclasses.dataclass(frozen=True)
class DDPM(_Discrete):
  """DDPM: `β_i` linear in `[β_1, β_T]`, `ᾱ_i = Π_{j≤i}(1 − β_j)`, t ∈ {0..T−1}."""

  beta_start: float = 1e-4
  beta_end: float = 0.02
  name = "ddpm"

  def _validate(self):
    lo = validation.check_number(self.beta_start, "beta_start", lo=0.0, hi=1.0,
                                 lo_open=True, hi_open=True)
    hi = validation.check_number(self.beta_end, "beta_end", lo=0.0, hi=1.0,
                                 lo_open=True, hi_open=True)
    if not lo <= hi:
      raise ValueError(f"'ddpm' needs beta_start <= beta_end; got {self.beta_start!r}, "
                       f"{self.beta_end!r}.")
    super()._validate()

  def alpha_bars(self) -> np.ndarray:
    """The table `ᾱ_i`, `[T]`, float64."""
    betas = np.linspace(self.beta_start, self.beta_end, self.num_timesteps,
                        dtype=np.float64)
    return np.cumprod(1.0 - betas)

  def _log_sigmas(self):
    a = self.alpha_bars()
    return np.log(np.sqrt((1.0 - a) / a))

  def scale(self, t):
    return jnp.sqrt(alpha_bar_of_sigma(self.sigma(t)))


@dataclasses.dataclass(frozen=True)
class LogLinear(_Discrete):
  """Log-linear (optimization view): `T` σ's geometric between the ends, `s = 1`.

  Consecutive levels satisfy `σ_{i−1} = (1 − β) σ_i` with a constant β.
  """

  sigma_lo: float = 0.01
  sigma_hi: float = 80.0
  name = "log_linear"

  def _validate(self):
    _check_sigma_range(self)
    super()._validate()

  def _log_sigmas(self):
    return np.linspace(math.log(self.sigma_lo), math.log(self.sigma_hi),
                       self.num_timesteps)

  def scale(self, t):
    return jnp.ones_like(jnp.asarray(t, dtype=jnp.result_type(float)))


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (VP, SubVP, Cosine, VE, EDM, DDPM, LogLinear)
}


def get_schedule(name: str, **overrides) -> Schedule:
  """Build a schedule by registry name (`vp`, `subvp`, `cosine`, `ve`, `edm`, `ddpm`, `log_linear`)."""
  if name not in SCHEDULES:
    raise validation.unknown_name("schedule", name, SCHEDULES)
  cls = SCHEDULES[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(f"Schedule {name!r} has no option(s) {sorted(unknown)}; "
                     f"its options are {sorted(fields)}.")
  return cls(**overrides)


# Sampling grids ---------------------------------------------------------------

def _time_points(schedule: Schedule, k: int, spacing: str) -> np.ndarray:
  """k decreasing times in `[t_min, t_max]` for a time-based spacing."""
  lo, hi = schedule.t_min, schedule.t_max
  if spacing == "uniform":
    ts = np.linspace(hi, lo, k)
  elif spacing == "quadratic":
    ts = lo + (hi - lo) * np.linspace(1.0, 0.0, k)**2
  elif schedule.discrete and spacing in ("leading", "leading_offset", "trailing"):
    T = int(round(hi)) + 1
    if k > T:
      raise ValueError(f"steps={k} exceeds the {T} levels of {schedule.name!r}.")
    if spacing == "trailing":
      ts = np.round(np.arange(T, 0, -T / k))[:k] - 1.0
    else:
      ts = (np.arange(k) * (T // k))[::-1].astype(np.float64)
      if spacing == "leading_offset":
        ts = ts + 1.0
  else:
    raise ValueError(f"spacing {spacing!r} needs a discrete schedule; "
                     f"{schedule.name!r} is continuous.")
  if schedule.discrete:
    ts = np.round(ts)
  return ts


GRID_SPACINGS = ("uniform", "quadratic", "leading", "leading_offset", "trailing",
                 "edm", "log_linear", "logsnr")


def sigma_grid(schedule: Schedule, steps: int, spacing: str = "uniform", *,
               final: str = "zero", rho: float = 7.0,
               sigma_min: float | None = None,
               sigma_max: float | None = None) -> np.ndarray:
  """A decreasing noise grid for a sampler, float64 `[steps + 1]`.

  Args:
    schedule: the training schedule (its `t` range fixes σ_min/σ_max).
    steps: number of denoiser steps, ≥ 1.
    spacing: `uniform` / `quadratic` (in t), `leading` / `leading_offset` /
      `trailing` (DDIM sub-sequences of a discrete schedule), `edm` (ρ-spaced
      in σ), `log_linear` / `logsnr` (geometric in σ, uniform in log-SNR).
    final: `"zero"` → the last step denoises to σ = 0 (`steps` points from the
      schedule, then 0); `"min"` → `steps + 1` points ending at σ_min.
    rho: EDM's ρ > 0.
    sigma_min / sigma_max: override the ends of the σ range.

  Returns:
    σ grid, strictly decreasing, `[steps + 1]`.
  """
  if (isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer))
      or steps < 1):
    raise ValueError(f"`steps` must be an integer >= 1; got {steps!r}.")
  validation.check_number(rho, "rho", lo=0.0, lo_open=True)
  if spacing not in GRID_SPACINGS:
    raise validation.unknown_name("grid spacing", spacing, GRID_SPACINGS)
  if final not in ("zero", "min"):
    raise ValueError(f"`final` must be 'zero' or 'min'; got {final!r}.")
  k = steps if final == "zero" else steps + 1
  lo = schedule.sigma_min if sigma_min is None else float(sigma_min)
  hi = schedule.sigma_max if sigma_max is None else float(sigma_max)
  if not 0 < lo < hi:
    raise ValueError(f"need 0 < sigma_min < sigma_max; got {lo}, {hi}.")
  if spacing in ("edm", "log_linear", "logsnr"):
    u = np.linspace(0.0, 1.0, k)
    if spacing == "edm":
      sig = (hi**(1 / rho) + u * (lo**(1 / rho) - hi**(1 / rho)))**rho
    else:
      sig = np.exp(np.log(hi) + u * (np.log(lo) - np.log(hi)))
    if k == 1:
      sig = np.array([hi])
  else:
    ts = _time_points(schedule, k, spacing)
    sig = schedule.sigma_np(ts)
    if sigma_min is not None or sigma_max is not None:
      sig = np.clip(sig, lo, hi)
  if final == "zero":
    sig = np.concatenate([sig, [0.0]])
  check_sigma_grid(sig)
  return sig


def check_sigma_grid(sigmas) -> None:
  """Raise unless `sigmas` is a 1-D, finite, strictly decreasing grid ≥ 0."""
  s = np.asarray(sigmas, dtype=np.float64)
  if s.ndim != 1 or s.shape[0] < 2:
    raise ValueError(f"a σ grid needs at least 2 entries in 1-D; got shape {s.shape}.")
  if not np.all(np.isfinite(s)) or np.any(s < 0):
    raise ValueError(f"σ grid entries must be finite and >= 0; got {s}.")
  if np.any(np.diff(s) >= 0):
    raise ValueError(f"σ grid must be strictly decreasing; got {s}.")


def edm_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
               rho: float = 7.0) -> np.ndarray:
  """EDM's grid `σ_i = (σ_max^{1/ρ} + i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`, then 0."""
  return sigma_grid(get_schedule("edm"), steps, "edm", rho=rho,
                    sigma_min=sigma_min, sigma_max=sigma_max)

