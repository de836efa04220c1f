"""The canonical denoiser: one value type, a registry by name, the network wrap, stacking.

Every sampler and metric consumes a *canonical denoiser*

    denoise(x [B, ...], sigma [B]) -> x0 [B, ...],   x = x0 + σ ε,   σ > 0,

the posterior mean `E[x0 | x]` in VE coordinates, i.e. the x0 head of the
kernel `x_t = s_t (x0 + σ_t ε)` with `s = 1` (docs/theory.md §0).  A
`Denoiser` is that callable as a value: it also says what it is (`name`,
`data_shape`, `num_models`, `info`), so a sampler can batch it and a config
can name it.

- Closed forms (`repro_jax.closed_form.denoisers`; images `[B, H, W, C]` are
  flattened for them and reshaped back): `empirical(data [N, ...])`,
  `gaussian(mean [D], cov [D, D])`, `gmm(mixture)`, `molrg(bases [K, D, R])`.
- `from_model(net, schedule, head, time_input=...)`: THE wrap of a network
  `net(x_in [B, ...], c [B]) -> head` trained on the kernel of `schedule`:
  its input is `x_t = s x` (times `c_in` under a preconditioning), its
  conditioning `c` one of `TIME_INPUTS` (`conditioning`), its output turned
  into x0 by Tweedie (`heads.to_x0`) or by EDM's `c_skip x + c_out F`.
- `stack(make, params)`: M denoisers of one kind (params with a leading axis
  M, e.g. network weights `[M, P]`) as ONE denoiser on a model-major batch
  `[M·B, ...]`: rows `[m·B, (m+1)·B)` go through model m.
- Registry `DENOISERS` and `make(name, **options)`: `"empirical"`,
  `"gaussian"`, `"gmm"`, `"molrg"` and `"network"` (a trained checkpoint,
  loaded through `repro_jax.networks.training.load_denoiser`), each with its
  options as a typed frozen dataclass (`EmpiricalOptions`, ...).
- `eps_of(denoise)`: the ε-head `(x − D(x, σ)) / σ` of the σ-form samplers.
- `smoothed(data, smoothing=τ)` ("smoothed", `closed_form.smoothed`): the
  σ-CFDM empirical denoiser averaged over a Gaussian ball around the query;
  `gaussian_lowrank(...)` ("gaussian_lowrank", `closed_form.gaussian_lowrank`):
  the Wiener filter of a low-rank plus diagonal Gaussian, given or fitted to
  data (docs/theory.md §6.6).
- `patch(data [N, H, W, C], schedule=..., mode=..., equivariant=...)`
  ("ls", "els", "patch_composite", `closed_form.patch`): the local and
  equivariant local score machines and the patch posterior composite, the
  window chosen from σ by a `patch.WindowSchedule` (docs/theory.md §6.6).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from repro_jax import settings as settings_lib
from repro_jax import validation
from repro_jax.closed_form import denoisers
from repro_jax.closed_form import gaussian_lowrank as lowrank_lib
from repro_jax.closed_form import patch as patch_lib
from repro_jax.closed_form import smoothed as smoothed_lib
from repro_jax.closed_form import streaming
from repro_jax.diffusion import heads
from repro_jax.diffusion.schedules import Schedule

DenoiserFn = Callable[[jax.Array, jax.Array], jax.Array]

# What a network is conditioned on (the training config's `diffusion.time_input`).
TIME_INPUTS = ("t", "log_sigma")


@dataclasses.dataclass(frozen=True, eq=False)
class Denoiser:
  """A canonical denoiser and what it is (compared and hashed by identity).

  Attributes:
    fn: `fn(x [B, ...], sigma [B]) -> x0 [B, ...]` (VE coordinates).
    name: what it is, e.g. a registry name (`"empirical"`, `"network"`).
    data_shape: the shape of one data point (`x.shape[1:]`), if known.
    num_models: None for one denoiser on `[B, ...]`; M for a stack of M
      models on a model-major batch `[M·B, ...]` (`stack`), which the batched
      sampler feeds M copies of each noise and returns as `[M, B, ...]`.
    info: anything else worth keeping (a checkpoint's step, config, rows).
  """

  fn: DenoiserFn
  name: str = "denoiser"
  data_shape: tuple[int, ...] | None = None
  num_models: int | None = None
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not callable(self.fn):
      raise ValueError(f"a denoiser needs a callable fn; got {type(self.fn).__name__}.")
    if self.num_models is not None and (isinstance(self.num_models, bool) or
                                        int(self.num_models) < 1):
      raise ValueError(f"num_models must be None or >= 1; got {self.num_models!r}.")

  def __call__(self, x, sigma):
    return self.fn(x, sigma)

  @property
  def stacked(self) -> bool:
    return self.num_models is not None

  def replace(self, **changes) -> "Denoiser":
    """A copy with some attributes changed (the same `fn` unless given)."""
    return dataclasses.replace(self, **changes)

  def map_x0(self, f: Callable[[jax.Array], jax.Array], name: str | None = None) -> "Denoiser":
    """The same kind of denoiser returning `f(x0)` (e.g. x0 clipped to the data range)."""
    fn = self.fn
    return self.replace(fn=lambda x, sigma: f(fn(x, sigma)), name=name or self.name)


def as_denoiser(denoise, **attributes) -> Denoiser:
  """`denoise` as a `Denoiser` value: itself if it is one, else wrapped with `attributes`."""
  if isinstance(denoise, Denoiser):
    return denoise.replace(**attributes) if attributes else denoise
  return Denoiser(denoise, **attributes)


def _per_row(sigma, x):
  """σ as `[B]` in the dtype of `x [B, ...]` (a scalar is broadcast)."""
  return jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])


# Networks ------------------------------------------------------------------------

def conditioning(schedule: Schedule, sigma, time_input: str, t=None):
  """A network's conditioning `c [B]` at noise level `σ [B]`.

  `"t"`: `1000 (t − t_min) / (t_max − t_min)`, the range of the sinusoidal
  embedding (`t = schedule.t_of_sigma(σ)` unless given, e.g. the integer time
  a discrete schedule was trained at); `"log_sigma"`: `¼ log σ` (EDM's
  `c_noise`, suits a Fourier embedding).
  """
  if time_input == "t":
    t = schedule.t_of_sigma(sigma) if t is None else t
    return 1000.0 * (t - schedule.t_min) / (schedule.t_max - schedule.t_min)
  if time_input == "log_sigma":
    return 0.25 * jnp.log(sigma)
  raise validation.unknown_name("time_input", time_input, TIME_INPUTS)


def from_model(net: Callable, schedule: Schedule, head: str = "eps", *,
               time_input: str = "t", preconditioning: Callable | None = None,
               name: str = "network", data_shape=None) -> Denoiser:
  """Wrap a network into the canonical `denoise(x, σ) -> x0`.

  Args:
    net: `net(x_in [B, ...], c [B]) -> [B, ...]`.
    schedule: the kernel `x_t = s_t (x0 + σ_t ε)` the network was trained on.
    head: what `net` predicts: `"x0"`, `"eps"`, `"score"` or `"v"`
      (`heads.to_x0` converts it at the kernel's `(s, σ)`).
    time_input: the conditioning `c`, see `conditioning`.
    preconditioning: optional `σ [B] -> (c_skip, c_out, c_in)` (EDM): the
      network's input is `c_in x_t` and its prediction `c_skip x_t + c_out F`.
    name, data_shape: recorded on the value.
  """
  if head not in heads.HEADS:
    raise validation.unknown_name("head", head, heads.HEADS)
  if time_input not in TIME_INPUTS:
    raise validation.unknown_name("time_input", time_input, TIME_INPUTS)

  def denoise(x, sigma):
    sigma = _per_row(sigma, x)
    s = schedule.scale_of_sigma(sigma).astype(x.dtype)
    x_t = heads.bcast(s, x) * x
    c = conditioning(schedule, sigma, time_input)
    if preconditioning is None:
      out = net(x_t, c)
    else:
      c_skip, c_out, c_in = preconditioning(sigma)
      f = net(heads.bcast(c_in, x) * x_t, c)
      out = heads.bcast(c_skip, x) * x_t + heads.bcast(c_out, x) * f
    return heads.to_x0(head, out, x_t, s, sigma)

  return Denoiser(denoise, name, None if data_shape is None else tuple(data_shape))


def stack(make: Callable[[Any], Callable], params, *, wrap: Callable | None = None,
          name: str = "stack", data_shape=None,
          info: Mapping[str, Any] | None = None) -> Denoiser:
  """M models of one kind as one denoiser on a model-major batch.

  Args:
    make: `p -> f` of one model from its parameters `p = params[m]`, `f(x [B,
      ...], v [B]) -> [B, ...]`: a canonical denoiser (`v = σ`), or with
      `wrap` a network (`v = c`, its conditioning).
    params: a pytree whose leaves all have the leading axis M (network
      weights `[M, P]`, MoLRG bases `[M, K, D, R]`).
    wrap: optional row-wise wrap of the stacked network into a denoiser (e.g.
      `Parameterization.denoiser`), applied once outside the vmap: the wrap
      acts on each row alone, so this is each model wrapped on its own.
    name, data_shape, info: recorded on the value (`num_models = M`).

  Returns:
    A `Denoiser` on `x [M·B, ...]`, `σ [M·B]`: rows `[m·B, (m+1)·B)` go
    through model m (one vmapped program).
  """
  leaves = jax.tree.leaves(params)
  if not leaves or any(jnp.ndim(a) < 1 for a in leaves):
    raise ValueError("stack() needs parameters with a leading model axis M.")
  m = int(jnp.shape(leaves[0])[0])
  if any(jnp.shape(a)[0] != m for a in leaves):
    raise ValueError(f"every parameter leaf needs the leading axis M = {m}; got "
                     f"{[jnp.shape(a) for a in leaves]}.")

  def stacked(x, v):
    if x.shape[0] % m:
      raise ValueError(f"a stack of {m} models needs a batch of M·B rows; got "
                       f"{x.shape[0]}.")
    xs = x.reshape((m, -1) + x.shape[1:])
    vs = jnp.broadcast_to(jnp.asarray(v), x.shape[:1]).reshape(m, -1)
    out = jax.vmap(lambda p, xm, vm: make(p)(xm, vm))(params, xs, vs)
    return out.reshape(x.shape)

  fn = stacked if wrap is None else wrap(stacked)
  return Denoiser(fn, name, None if data_shape is None else tuple(data_shape), m,
                  dict(info or {}))


def eps_of(denoise: DenoiserFn) -> DenoiserFn:
  """ε-head in VE coordinates: `ε(x, σ) = (x − D(x, σ)) / σ`."""
  def eps(x, sigma):
    sigma = _per_row(sigma, x)
    return (x - denoise(x, sigma)) / heads.bcast(sigma, x)
  return eps


# Closed forms ----------------------------------------------------------------------

def _flat(name: str, closed_form, data_shape) -> Denoiser:
  """A closed form on `[B, D]` as a canonical denoiser on `[B, ...]`."""
  def denoise(x, sigma):
    shape = x.shape
    return closed_form(x.reshape(shape[0], -1), _per_row(sigma, x)).reshape(shape)
  return Denoiser(denoise, name, tuple(data_shape))


def empirical(data, *, chunk_size: int | None = streaming.DEFAULT_CHUNK,
              precision: str = "highest", mesh=None) -> Denoiser:
  """The empirical (memorizing) denoiser of `data [N, ...]` (docs/theory.md §1).

  `chunk_size`, `precision`, `mesh` as `denoisers.empirical_denoiser` (with a
  mesh the rows of `data` are split over its "data" axis).  The squared norms
  of the rows are computed once here, not at every call, and the data are
  checked here (shape, N ≥ 1, finite): the samplers trace the denoiser, where
  value checks do not run (`repro_jax.validation`).
  """
  data = jnp.asarray(data)
  if data.ndim < 2:
    raise ValueError(f"`data` must have shape [N, ...] with a feature axis; got "
                     f"shape {data.shape}.")
  flat = data.reshape(data.shape[0], math.prod(data.shape[1:]))
  denoisers.check_data(flat)
  _, dt = validation.float_dtypes(data=flat)   # float16 norms overflow at pixel scale
  sq = jnp.sum(jnp.square(flat.astype(dt)), axis=1)
  return _flat("empirical", lambda x, s: denoisers.empirical_denoiser(
      x, flat, s, data_sq=sq, chunk_size=chunk_size, precision=precision, mesh=mesh),
      data.shape[1:])


def gaussian(mean, cov) -> Denoiser:
  """The posterior mean of `N(mean [D], cov [D, D])`."""
  mix = denoisers.GaussianMixture.from_covariances(
      jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(cov)[None])
  return gmm(mix).replace(name="gaussian")


def gmm(mixture: denoisers.GaussianMixture) -> Denoiser:
  """The posterior mean of a Gaussian mixture (`denoisers.gmm_denoiser`)."""
  return _flat("gmm", lambda x, s: denoisers.gmm_denoiser(x, mixture, s),
               mixture.means.shape[1:])


def molrg(bases, weights=None) -> Denoiser:
  """The MoLRG posterior mean (`denoisers.molrg_denoiser`, α = 1, β = σ), bases
  `[K, D, R]`; the bases and weights are checked here."""
  denoisers.check_bases(bases)
  if weights is not None:
    denoisers.check_weights(weights, jnp.shape(bases)[0])
  return _flat("molrg", lambda x, s: denoisers.molrg_denoiser(
      x, bases, jnp.ones_like(s), s, weights), jnp.shape(bases)[1:2])


def _flat_data(data) -> jax.Array:
  """`data [N, ...]` as checked rows `[N, D]`."""
  data = jnp.asarray(data)
  if data.ndim < 2:
    raise ValueError(f"`data` must have shape [N, ...] with a feature axis; got "
                     f"shape {data.shape}.")
  flat = data.reshape(data.shape[0], math.prod(data.shape[1:]))
  denoisers.check_data(flat)
  return flat


def smoothed(data, *, smoothing: float, num_draws: int = 16, seed: int = 0,
             coordinates: str = "interpolant", antithetic: bool = True,
             chunk_size: int | None = streaming.DEFAULT_CHUNK,
             precision: str = "highest", mesh=None) -> Denoiser:
  """The σ-CFDM smoothed closed-form denoiser of `data [N, ...]` (docs/theory.md §6.6).

  At σ: the empirical denoiser averaged over `num_draws` standard normal
  draws `z` (fixed by `seed`, so the denoiser is a deterministic function of
  `(x, σ)`) at `x + ρ(σ) z`, `ρ = smoothed.ve_radius(smoothing, σ,
  coordinates)`: `"interpolant"` keeps the paper's radius τ fixed in its
  `x_t = t y + (1 − t) ε` (VE radius `τ (1 + σ)`), `"ve"` keeps it fixed in
  VE coordinates.  Other options as `empirical`; the data are checked and
  their squared norms computed here.
  """
  flat = _flat_data(data)
  smoothing = validation.check_number(smoothing, "smoothing", lo=0.0)
  validation.check_int(num_draws, "num_draws", minimum=1)
  validation.check_int(seed, "seed")
  if coordinates not in smoothed_lib.SMOOTHING_COORDINATES:
    raise validation.unknown_name("smoothing coordinates", coordinates,
                                  smoothed_lib.SMOOTHING_COORDINATES)
  _, dt = validation.float_dtypes(data=flat)
  sq = jnp.sum(jnp.square(flat.astype(dt)), axis=1)
  key = jax.random.key(seed)

  def closed_form(x, sigma):
    return smoothed_lib.smoothed_denoiser(
        x, flat, sigma, smoothed_lib.ve_radius(smoothing, sigma, coordinates), key=key,
        num_draws=num_draws, antithetic=antithetic, chunk_size=chunk_size,
        precision=precision, mesh=mesh, data_sq=sq)

  info = dict(smoothing=smoothing, num_draws=num_draws, seed=seed, coordinates=coordinates)
  return _flat("smoothed", closed_form, jnp.shape(data)[1:]).replace(info=info)


def gaussian_lowrank(gaussian: lowrank_lib.LowRankGaussian | None = None, *, data=None,
                     rank: int | None = None, residual: str = "isotropic",
                     ddof: int = 0) -> Denoiser:
  """The Wiener filter of `N(μ, U diag(λ) Uᵀ + diag(d))` (docs/theory.md §6.6).

  Either a given `gaussian`, or one fitted to `data [N, ...]` with
  `gaussian_lowrank.fit_lowrank_gaussian(rank, residual, ddof)`: the
  hidden-Gaussian denoiser of the training set (Li, Dai & Qu, 2024).
  """
  if (gaussian is None) == (data is None):
    raise ValueError("gaussian_lowrank needs exactly one of `gaussian` (a "
                     "LowRankGaussian) and `data` [N, ...] (with `rank`).")
  if data is not None:
    if rank is None:
      raise ValueError("gaussian_lowrank fitted to `data` needs `rank`.")
    gaussian = lowrank_lib.fit_lowrank_gaussian(_flat_data(data), rank, residual=residual,
                                                ddof=ddof)
    shape = jnp.shape(data)[1:]
  else:
    if rank is not None:
      raise ValueError("`rank` is an option of the fit; a given `gaussian` has its own.")
    lowrank_lib.check_lowrank(gaussian)
    shape = jnp.shape(gaussian.mean)
  return _flat("gaussian_lowrank", lambda x, s: lowrank_lib.lowrank_gaussian_denoiser(
      x, gaussian, s), shape)


def patch(data, *, schedule, max_window: int | None = None, mode: str = "center",
          equivariant: bool = False, boundary: str | None = None,
          chunk_size: int | None = None, precision: str = "highest", mesh=None) -> Denoiser:
  """Patch posterior denoisers of training images `data [N, H, W, C]` (docs/theory.md §6.6).

  `mode="center"`: the LS machine (`equivariant=False`, named "ls") or the
  ELS machine ("els") of Kamb & Ganguli; `mode="composite"`: the patch
  posterior composite of Niedoba et al. ("patch_composite").  `schedule`: a
  `patch.WindowSchedule` (or an int, one window for every σ) giving the
  window side at each σ; `max_window` (default: the largest window of the
  schedule, made odd) is the static patch size, so one compilation serves
  every σ.  Other options as `patch.patch_denoiser`; the data, options and
  schedule are checked here.
  """
  data = jnp.asarray(data)
  if not isinstance(schedule, patch_lib.WindowSchedule):
    validation.check_int(schedule, "schedule", minimum=1)
    schedule = patch_lib.WindowSchedule.constant(schedule)
  if max_window is None:
    max_window = schedule.max_window | 1
  boundary = patch_lib.check_options(mode, equivariant, boundary, max_window)
  patch_lib.check_data(data)
  patch_lib.check_window(schedule, max_window, mode, "schedule")
  validation.check_chunk(chunk_size)
  name = "patch_composite" if mode == "composite" else ("els" if equivariant else "ls")

  def denoise(x, sigma):
    return patch_lib.patch_denoiser(
        x, data, _per_row(sigma, x), window=schedule, max_window=max_window, mode=mode,
        equivariant=equivariant, boundary=boundary, chunk_size=chunk_size,
        precision=precision, mesh=mesh)

  info = dict(mode=mode, equivariant=bool(equivariant), boundary=boundary,
              max_window=max_window, schedule=schedule)
  return Denoiser(denoise, name, tuple(data.shape[1:]), info=info)


# Registry --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class EmpiricalOptions:
  data: Any                                  # [N, ...]
  chunk_size: int | None = streaming.DEFAULT_CHUNK
  precision: str = "highest"
  mesh: Any = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class GaussianOptions:
  mean: Any                                  # [D]
  cov: Any                                   # [D, D]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class GmmOptions:
  mixture: Any                               # denoisers.GaussianMixture


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class MolrgOptions:
  bases: Any                                 # [K, D, R]
  weights: Any = None                        # [K] or None (uniform)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class SmoothedOptions:
  data: Any                                  # [N, ...]
  smoothing: float                           # τ >= 0, read per `coordinates`
  num_draws: int = 16                        # Monte Carlo draws of z per query
  seed: int = 0                              # fixes the draws
  coordinates: str = "interpolant"           # or "ve" (smoothed.SMOOTHING_COORDINATES)
  antithetic: bool = True                    # draws in pairs ±z
  chunk_size: int | None = streaming.DEFAULT_CHUNK
  precision: str = "highest"
  mesh: Any = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class GaussianLowrankOptions:
  """A given `gaussian`, or one fitted to `data` (exactly one of the two)."""
  gaussian: Any = None                       # gaussian_lowrank.LowRankGaussian
  data: Any = None                           # [N, ...]
  rank: int | None = None                    # R, required with data
  residual: str = "isotropic"                # or "diagonal", "none"
  ddof: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class PatchOptions:
  """"ls" / "els": windows from σ by `patch.WindowSchedule(sigma_edges, windows)`."""
  data: Any                                  # [N, H, W, C]
  windows: tuple[int, ...]                   # window sides, one more than sigma_edges
  sigma_edges: tuple[float, ...] = ()        # increasing σ at which the window changes
  max_window: int | None = None              # static side M (odd); default max(windows)
  boundary: str | None = None                # "zeros" (default) or "circular"
  chunk_size: int | None = None              # training images per block; None: automatic
  precision: str = "highest"
  mesh: Any = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class PatchCompositeOptions(PatchOptions):
  """"patch_composite": crops inside the image (boundary "valid"), same-position
  posteriors unless `equivariant`."""
  equivariant: bool = False


def _patch(o: PatchOptions, mode: str, equivariant: bool) -> Denoiser:
  return patch(o.data, schedule=patch_lib.WindowSchedule(o.sigma_edges, o.windows),
               max_window=o.max_window, mode=mode, equivariant=equivariant,
               boundary=o.boundary, chunk_size=o.chunk_size, precision=o.precision,
               mesh=o.mesh)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class NetworkOptions:
  """A checkpoint written by `training.train` / `train_many` (see `load_denoiser`)."""
  workdir: str
  use_ema: bool = True
  step: int | None = None                    # default: the latest
  model_index: int | None = None             # required for a train_many run
  labels: Any = None                         # class labels [B] or a scalar


def _network(o: NetworkOptions) -> Denoiser:
  from repro_jax.networks import training  # the training stack only when asked for
  return training.load_denoiser(o.workdir, use_ema=o.use_ema, step=o.step,
                                model_index=o.model_index, labels=o.labels)


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered denoiser: its typed options and how to build it from them."""
  options: type
  build: Callable[[Any], Denoiser]


DENOISERS: dict[str, Entry] = {
    "empirical": Entry(EmpiricalOptions, lambda o: empirical(
        o.data, chunk_size=o.chunk_size, precision=o.precision, mesh=o.mesh)),
    "gaussian": Entry(GaussianOptions, lambda o: gaussian(o.mean, o.cov)),
    "gmm": Entry(GmmOptions, lambda o: gmm(o.mixture)),
    "molrg": Entry(MolrgOptions, lambda o: molrg(o.bases, o.weights)),
    "smoothed": Entry(SmoothedOptions, lambda o: smoothed(
        o.data, smoothing=o.smoothing, num_draws=o.num_draws, seed=o.seed,
        coordinates=o.coordinates, antithetic=o.antithetic, chunk_size=o.chunk_size,
        precision=o.precision, mesh=o.mesh)),
    "gaussian_lowrank": Entry(GaussianLowrankOptions, lambda o: gaussian_lowrank(
        o.gaussian, data=o.data, rank=o.rank, residual=o.residual, ddof=o.ddof)),
    "ls": Entry(PatchOptions, lambda o: _patch(o, "center", False)),
    "els": Entry(PatchOptions, lambda o: _patch(o, "center", True)),
    "patch_composite": Entry(PatchCompositeOptions, lambda o: _patch(
        o, "composite", o.equivariant)),
    "network": Entry(NetworkOptions, _network),
}


def make(name: str, **options) -> Denoiser:
  """The registered denoiser `name` built from its typed `options`.

      make("empirical", data=x)                   # x [N, ...]
      make("network", workdir="workdirs/run", use_ema=True)

  Unknown names, unknown or missing options and options of the wrong type
  raise ValueError naming them.
  """
  if not isinstance(name, str) or name not in DENOISERS:
    raise validation.unknown_name("denoiser", name, DENOISERS)
  entry = DENOISERS[name]
  return entry.build(settings_lib.parse(entry.options, options, where=f"denoiser.{name}"))
