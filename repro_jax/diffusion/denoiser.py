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
