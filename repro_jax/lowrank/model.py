"""Parameterized low-rank denoisers and their training (low-dim talk; docs/theory.md §4).

Noise convention: the low-dim talk's `x_t = α_t x0 + β_t ε` with `α = s`,
`β = s σ` of a schedule from `repro_jax.diffusion.schedules` (VP by default).  Both models
return the x0 head:

- K = 1:  `x_U(x_t, t) = α/(α² + β²) · U Uᵀ x_t`,  `U [D, R]` orthonormal;
- K > 1:  `x_θ(x_t, t) = α/(α² + β²) Σ_k w_k(θ; x_t) U_k U_kᵀ x_t`, with `w` the
  MoLRG posterior weights (`denoisers.molrg_posterior_weights`).

Training (`train_lowrank`) minimizes the x0 loss `E_t E_ε ‖x_θ(x_t, t) − x0‖²`
(unweighted in t) over a training set by a Riemannian optax optimizer on the
Stiefel manifold: Euclidean gradient → tangent projection (→ optional
preconditioning) → `optax.sgd` with Nesterov momentum or `optax.adam`
(cosine-decayed rate, optional clipping) → tangent projection of the update →
**polar retraction**, computed by Newton–Schulz iterations (matmuls only;
padded zero columns stay exactly zero).
With `joint_orthogonal` the concatenation `[U_1 … U_K] ∈ O^{D×KR}`, as in the
subspace-clustering theorem.  The expectation over ε is either Monte Carlo
(`objective="mc"`, any K) or exact (`objective="expected"`, K = 1 only: the loss
is quadratic in ε, so `E_ε` has a closed form and training is deterministic).

Grids of (seed, N, r) share one compiled program (`train_grid`): data are padded
to `N_max` rows with a row `mask [N_max]`, bases to `R_max` columns with a
`rank_mask [R_max]` whose unused columns are kept at zero, so a whole phase
diagram is one `jit(vmap(train_lowrank))`; `repro_jax.lowrank.molrg_grid` builds such
grids of MoLRG data, `repro_jax.lowrank.stiefel` holds the manifold operations.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from repro_jax import validation
from repro_jax.lowrank import clustering
from repro_jax.closed_form import denoisers
from repro_jax.diffusion import schedules
from repro_jax.lowrank import stiefel


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Static settings of `train_lowrank` (hashable: a `jit` static argument).

  Attributes:
    num_components: K, the number of subspaces of the model.
    steps: optimizer steps (full batch over the training set).
    learning_rate: peak rate, cosine-decayed to `learning_rate · final_lr_fraction`.
    final_lr_fraction: end of the cosine decay, relative to the peak.
    optimizer: `"sgd"` (Nesterov momentum) or `"adam"`.
    momentum: SGD momentum, or Adam's b1.
    adam_b2: Adam's b2.
    objective: `"mc"` (sampled t and ε) or `"expected"` (exact `E_ε`, K = 1).
    noise_space: `"model"`: ε enters the loss only through `[U_1 … U_K]ᵀ ε`,
      which is `N(0, I_{KR})` while the bases are jointly orthonormal, so that
      vector is drawn directly (same loss on the manifold, hence unbiased
      Riemannian gradients, with the variance of the orthogonal part of ε
      removed, and KR instead of D normals per draw); `"ambient"`: draw
      `ε ∈ R^D` (needed when `joint_orthogonal` is False and K > 1).
    schedule: name in `schedules.SCHEDULES`; gives `α = s(t)`, `β = s(t) σ(t)`.
    t_min, t_max: the training times; `mc` draws t uniformly in the range,
      `expected` averages over `num_t` evenly spaced times.
    num_t: times of the `expected` objective's quadrature.
    single_t: if set, train at this one t only (the theorem holds per t).
    noise_per_point: Monte Carlo noise draws per training point and step.
    antithetic: draw the noise in pairs (ε, −ε) (when `noise_per_point` is
      even): the terms of the loss gradient that are odd in ε cancel.
    joint_orthogonal: retract `[U_1 … U_K]` jointly (mutually orthogonal
      subspaces, as in the subspace-clustering theorem) instead of each `U_k`.
    polar_iters: Newton–Schulz iterations of each retraction.
    init: `"random"` (Haar-random orthonormal bases) or `"seeded"` (the
      neighbourhood seeding of `clustering.seed_bases`, then a joint polar
      factor).
    restarts: independent initializations trained side by side (vmapped); the
      one with the lowest final training loss (common noise) is returned.
    precondition: Riemannian preconditioning (Mishra & Sepulchre 2016): the
      gradient of each `U_k` is right-multiplied by `(U_kᵀ S U_k + μ I)⁻¹`,
      S the training scatter `Σ y yᵀ / λ_max`.  The PCA curvature along
      (inside i, outside j) is `λ_i − λ_j`; preconditioned it is
      `(λ_i − λ_j)/(λ_i + μ)` ≈ 1, so cells with N ≈ r, whose `σ_r(Y)²` can be
      10⁻⁶ of `σ_1(Y)²`, converge in as few steps as well-conditioned ones
      (μ must then sit above the dtype's resolution: float64 for such cells).
      Meant for K = 1; with K > 1 every block uses the whole scatter.
    precondition_damping: μ, relative to λ_max.
    max_grad_norm: clip the (preconditioned) Riemannian gradient to this
      Frobenius norm (`optax.clip_by_global_norm`): a trust region for the
      first steps, where preconditioned steps along directions without data
      would be huge.
  """
  num_components: int = 1
  steps: int = 400
  learning_rate: float = 1.0
  final_lr_fraction: float = 1e-3
  optimizer: str = "sgd"
  momentum: float = 0.9
  adam_b2: float = 0.999
  objective: str = "mc"
  noise_space: str = "model"
  schedule: str = "vp"
  t_min: float = 0.01
  t_max: float = 0.1
  num_t: int = 8
  single_t: float | None = None
  noise_per_point: int = 2
  antithetic: bool = True
  joint_orthogonal: bool = True
  polar_iters: int = 3
  init: str = "random"
  restarts: int = 1
  precondition: bool = False
  precondition_damping: float = 1e-3
  max_grad_norm: float | None = None

  def __post_init__(self):
    for field, allowed in (("objective", ("mc", "expected")),
                           ("noise_space", ("model", "ambient")),
                           ("optimizer", ("sgd", "adam")),
                           ("init", ("random", "seeded"))):
      if getattr(self, field) not in allowed:
        raise ValueError(f"`{field}` must be one of {allowed}; got "
                         f"{getattr(self, field)!r}.")
    if self.objective == "expected" and self.num_components != 1:
      raise ValueError("the closed-form `expected` objective exists for K = 1 only; "
                       "use objective='mc' for K > 1.")
    if (self.noise_space == "model" and self.num_components > 1
        and not self.joint_orthogonal):
      raise ValueError("noise_space='model' needs joint_orthogonal=True when K > 1.")
    for field in ("num_components", "steps", "noise_per_point", "restarts", "num_t"):
      validation.check_int(getattr(self, field), field, minimum=1)
    validation.check_int(self.polar_iters, "polar_iters", minimum=0)
    if not 0 < self.t_min <= self.t_max:
      raise ValueError(f"need 0 < t_min <= t_max; got {self.t_min}, {self.t_max}.")
    validation.check_rate(self.learning_rate, "`learning_rate`")
    for field in ("final_lr_fraction", "momentum", "adam_b2", "precondition_damping"):
      value = getattr(self, field)
      if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"`{field}` must be a finite number >= 0; got {value!r}.")
    if self.max_grad_norm is not None:
      validation.check_rate(self.max_grad_norm, "`max_grad_norm`")


class TrainResult(NamedTuple):
  """`bases [K, D, R]` (orthonormal active columns, zero padding), `losses [T]`
  (training loss per step, of the returned restart), `restart_losses [S]`
  (final loss of each restart, common noise)."""
  bases: jax.Array
  losses: jax.Array
  restart_losses: jax.Array


def compile_friendly_rng(fn):
  """Run (and so trace) `fn` under `jax.threefry_partitionable(False)`.

  With the partitionable threefry (JAX's default) XLA's CPU compiler spends
  seconds on every `jax.random` call of a large shape; these programs hold a
  few such calls and compile 2–3× faster without it.  The flag is part of
  `jit`'s cache key, and only changes which (equally valid) random stream
  the keys produce; nothing here is sharded.
  """
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    with jax.threefry_partitionable(False):
      return fn(*args, **kwargs)
  return wrapper


# Models ----------------------------------------------------------------------

def _per_row(v, b, dtype):
  return jnp.broadcast_to(jnp.asarray(v, dtype).reshape(-1), (b,))


def lowrank_denoiser(x, basis, alpha, beta):
  """K = 1 model `α/(α² + β²) U Uᵀ x_t` (x0 head).

  Args:
    x: `x_t = α x0 + β ε`, `[B, D]`.
    basis: `U [D, R]` (orthonormal or zero columns).
    alpha, beta: scalars or `[B]`.

  Returns:
    `[B, D]`.
  """
  b = x.shape[0]
  al, be = _per_row(alpha, b, x.dtype), _per_row(beta, b, x.dtype)
  c = al / (jnp.square(al) + jnp.square(be))
  return c[:, None] * ((x @ basis) @ basis.T)


def mixture_denoiser(x, bases, alpha, beta, ranks=None):
  """K ≥ 1 model `α/(α² + β²) Σ_k w_k(x_t) U_k U_kᵀ x_t` (x0 head).

  Args:
    x: `[B, D]`.
    bases: `[K, D, R]`, zero-padded columns allowed.
    alpha, beta: scalars or `[B]`.
    ranks: `[K]` ranks (the log-determinant terms of `w`); default: counted.

  Returns:
    `[B, D]`.
  """
  if bases.shape[0] == 1:
    return lowrank_denoiser(x, bases[0], alpha, beta)
  b = x.shape[0]
  al, be = _per_row(alpha, b, x.dtype), _per_row(beta, b, x.dtype)
  w = denoisers.molrg_posterior_weights(x, bases, al, be, ranks=ranks)   # [B, K]
  coords = jnp.einsum("bd,kdr->bkr", x, bases) * w[..., None]
  c = al / (jnp.square(al) + jnp.square(be))
  return c[:, None] * jnp.einsum("bkr,kdr->bd", coords, bases)


# Losses ----------------------------------------------------------------------

def _times(cfg: TrainConfig, dtype):
  if cfg.single_t is not None:
    return jnp.full((1,), cfg.single_t, dtype)
  return jnp.linspace(cfg.t_min, cfg.t_max, cfg.num_t, dtype=dtype)


def _scale(data, mask):
  """`λ_max(Σ_i mask_i y_i y_iᵀ)`: the losses are divided by it.

  It is the largest curvature of the PCA objective, so a learning rate of
  order 1 is stable in every cell of a grid whatever its N, r or data scale
  (a classical 1/L step); a constant, outside the gradient.
  """
  y = data * mask[:, None]
  lam = jnp.linalg.eigvalsh(y @ y.T)[-1]
  return jax.lax.stop_gradient(jnp.maximum(lam, jnp.finfo(data.dtype).tiny))


def _draw_shape(m, n, width, cfg: TrainConfig):
  pairs = cfg.antithetic and m % 2 == 0
  return (m // 2 if pairs else m, n, width + 1)


def _split_draws(g, m, cfg: TrainConfig):
  """Normals `g` of `_draw_shape` → `(t [m, n], noise [m, n, width])`.

  One RNG op per step (XLA compiles every `jax.random` call into its own
  threefry computation): the first column becomes t (through the normal CDF,
  uniform in [t_min, t_max]), the rest the noise; antithetic pairs
  `(t, ε)`, `(t, −ε)` share t.
  """
  if cfg.single_t is None:
    t = cfg.t_min + (cfg.t_max - cfg.t_min) * jax.scipy.special.ndtr(g[..., 0])
  else:
    t = jnp.full(g.shape[:2], cfg.single_t, g.dtype)
  noise = g[..., 1:]
  if g.shape[0] != m:
    t, noise = jnp.concatenate([t, t]), jnp.concatenate([noise, -noise])
  return t, noise


def ambient_errors(bases, data, alpha, beta, eps, rank_mask):
  """`‖x_θ(α x0 + β ε) − x0‖²`, `[M, N]`, for data `[N, D]`, `alpha`, `beta`
  `[M, N]`, noise `eps [M, N, D]`."""
  m, n, d = eps.shape
  xt = alpha[..., None] * data + beta[..., None] * eps
  pred = mixture_denoiser(xt.reshape(m * n, d), bases, alpha.reshape(-1),
                          beta.reshape(-1), jnp.sum(rank_mask, -1))
  return jnp.sum(jnp.square(pred.reshape(m, n, d) - data), -1)


def model_space_errors(bases, data, alpha, beta, xi, rank_mask):
  """The same errors from `xi = [U_1 … U_K]ᵀ ε`, `[M, N, K, R]` → `[M, N]`.

  Exact when the bases are jointly orthonormal (`ξ` then replaces the D-dim
  noise: nothing else of ε reaches the loss).
  """
  a = jnp.einsum("nd,kdr->nkr", data, bases)                            # [N, K, R]
  z = alpha[..., None, None] * a + beta[..., None, None] * xi * rank_mask
  zz = jnp.sum(jnp.square(z), -1)                                       # [M, N, K]
  za = jnp.sum(z * a, -1)
  a2, b2 = jnp.square(alpha)[..., None], jnp.square(beta)[..., None]
  c = alpha[..., None] / (a2 + b2)
  if bases.shape[0] == 1:
    w = jnp.ones_like(zz)
  else:  # MoLRG posterior weights, uniform π (denoisers.molrg_posterior_weights).
    phi = a2 / (2.0 * b2 * (a2 + b2))
    w = jax.nn.softmax(phi * zz - 0.5 * jnp.sum(rank_mask, -1) * jnp.log1p(a2 / b2),
                       axis=-1)
  return (jnp.sum(jnp.square(c * w) * zz - 2.0 * c * w * za, -1)
          + jnp.sum(jnp.square(data), -1))


def mc_denoising_loss(bases, key, data, mask, rank_mask, cfg: TrainConfig,
                      normals=None):
  """Monte Carlo x0 loss `Σ_i E_{t,ε} ‖x_θ(α x0_i + β ε, t) − x0_i‖² / Σ_i ‖x0_i‖²`.

  With `cfg.noise_space == "model"` the loss is evaluated in the bases'
  coordinates: `z_k = U_kᵀ x_t = α U_kᵀ x0 + β ξ_k` with `ξ ~ N(0, I_{KR})`
  standing for `[U_1 … U_K]ᵀ ε`, and, for jointly orthonormal bases,
  `‖x_θ − x0‖² = c² Σ_k w_k² ‖z_k‖² − 2c Σ_k w_k ⟨z_k, U_kᵀ x0⟩ + ‖x0‖²`.
  It equals the ambient loss for any ε with `Uᵀε = ξ` (tested), so on the
  manifold the two have the same expectation and Riemannian gradient.

  Args:
    bases: `[K, D, R]`.
    key: PRNG key for t and ε (one RNG op); ignored if `normals` is given.
    data: `[N, D]` (rows with `mask = 0` are ignored).
    mask: `[N]` in {0, 1}.
    rank_mask: `[K, R]` active columns.
    cfg: `TrainConfig`; `noise_per_point` draws per row, t ~ U[t_min, t_max]
      (or `single_t`).
    normals: optional pre-drawn standard normals `[M or M/2, N, W + 1]`
      (W = D for ambient noise, K·R in model space): column 0 gives t.

  Returns:
    scalar loss, divided by `λ_max(Σ_i y_i y_iᵀ)` (see `_scale`).
  """
  sched = schedules.get_schedule(cfg.schedule)
  m, (n, d), dtype = cfg.noise_per_point, data.shape, data.dtype
  kr = rank_mask.shape[0] * rank_mask.shape[1]
  width = d if cfg.noise_space == "ambient" else kr
  if normals is None:
    normals = jax.random.normal(key, _draw_shape(m, n, width, cfg), dtype)
  t, noise = _split_draws(normals, m, cfg)
  alpha, beta = sched.alpha_beta(t)                                     # [M, N]
  if cfg.noise_space == "ambient":
    err = ambient_errors(bases, data, alpha, beta, noise, rank_mask)
  else:
    err = model_space_errors(bases, data, alpha, beta,
                             noise.reshape(m, n, *rank_mask.shape), rank_mask)
  return jnp.sum(mask * err) / (m * _scale(data, mask))


def expected_denoising_loss(basis, data, mask, cfg: TrainConfig):
  """K = 1 x0 loss with `E_ε` in closed form, averaged over the t quadrature.

  `E_ε ‖c U Uᵀ (α y + β ε) − y‖² = ‖(c α U Uᵀ − I) y‖² + c² β² ‖U Uᵀ‖_F²`,
  `c = α/(α² + β²)`.  For orthonormal U the last term is the constant
  `c² β² r`, and the first is `‖y‖² − γ(2 − γ) ‖Uᵀ y‖²` with `γ = cα ∈ (0, 1)`:
  minimizing the loss is PCA, `max ‖Uᵀ Y‖_F²` (docs/theory.md §4).

  Args:
    basis: `U [D, R]`.
    data: `[N, D]`; mask: `[N]`.

  Returns:
    scalar loss (divided by `λ_max(Σ_i y_i y_iᵀ)`).
  """
  sched = schedules.get_schedule(cfg.schedule)
  alpha, beta = sched.alpha_beta(_times(cfg, data.dtype))              # [T]
  gamma = jnp.square(alpha) / (jnp.square(alpha) + jnp.square(beta))  # cα
  c2b2 = gamma * jnp.square(beta) / (jnp.square(alpha) + jnp.square(beta))
  # ‖γ U a − y‖² = γ² aᵀ(UᵀU)a − 2γ‖a‖² + ‖y‖² with a = Uᵀy: no [T, N, D] array.
  a = data @ basis                                                    # [N, R]
  gram = basis.T @ basis
  per_point = (jnp.mean(jnp.square(gamma)) * jnp.sum((a @ gram) * a, -1)
               - 2.0 * jnp.mean(gamma) * jnp.sum(jnp.square(a), -1)
               + jnp.sum(jnp.square(data), -1))
  n = jnp.sum(mask)
  noise = n * jnp.mean(c2b2) * jnp.sum(jnp.square(gram))
  return (jnp.sum(mask * per_point) + noise) / _scale(data, mask)


# Training --------------------------------------------------------------------

def _init_bases(key, data, mask, cmask, cfg: TrainConfig):
  kk, r_max = cmask.shape
  d = data.shape[1]
  if cfg.init == "random":
    return stiefel.random_stiefel(key, d, kk, r_max, joint=cfg.joint_orthogonal,
                                  dtype=data.dtype) * cmask[:, None, :]
  seeds = clustering.seed_bases(key, data, mask, cmask)
  x = stiefel.flatten_blocks(seeds, cfg.joint_orthogonal)
  u, _, vt = jnp.linalg.svd(x, full_matrices=False)
  polar = stiefel.unflatten_blocks(u @ vt, seeds.shape, cfg.joint_orthogonal)
  return polar * cmask[:, None, :]


def _train_single(key, data, mask, cmask, cfg: TrainConfig):
  """One initialization → `(bases [K, D, R], losses [T])`; `key`: 2 keys."""
  r_max = cmask.shape[1]
  joint = cfg.joint_orthogonal
  col = cmask[:, None, :]
  k_init, k_train = key[0], key[1]
  u0 = _init_bases(k_init, data, mask, cmask, cfg)
  if cfg.objective == "expected":
    loss_fn = lambda u, _: expected_denoising_loss(u[0], data, mask, cfg)
  else:
    step_keys = jax.random.split(k_train, cfg.steps)
    loss_fn = lambda u, i: mc_denoising_loss(u, step_keys[i], data, mask, cmask, cfg)
  sched = optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps,
                                      alpha=cfg.final_lr_fraction)
  if cfg.optimizer == "adam":
    opt = optax.adam(sched, b1=cfg.momentum, b2=cfg.adam_b2)
  else:
    opt = optax.sgd(sched, momentum=cfg.momentum, nesterov=True)
  if cfg.max_grad_norm is not None:
    opt = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), opt)

  def tangent(u, g):
    return stiefel.project_blocks(u, g * col, joint) * col

  if cfg.precondition:
    y = data * mask[:, None]
    scatter = (y.T @ y) / _scale(data, mask)                          # [D, D], λ_max = 1

  def precondition(u, g):
    """Right-multiply each block by `(U_kᵀ S U_k + μ I)⁻¹` (S: data scatter / λ_max)."""
    m = jnp.einsum("kdr,de,kes->krs", u, scatter, u)
    m = m + cfg.precondition_damping * jnp.eye(r_max, dtype=u.dtype)
    return jnp.einsum("kdr,krs->kds", g, jnp.linalg.inv(m))

  def step(carry, i):
    u, state = carry
    loss, g = jax.value_and_grad(loss_fn)(u, i)
    g = tangent(u, g)
    if cfg.precondition:
      g = tangent(u, precondition(u, g))
    upd, state = opt.update(g, state, u)
    u = optax.apply_updates(u, tangent(u, upd))
    u = stiefel.retract_blocks(u, joint, cfg.polar_iters)
    return (u * col, state), loss

  (u, _), losses = jax.lax.scan(step, (u0, opt.init(u0)), jnp.arange(cfg.steps))
  # Two more Newton–Schulz steps: orthonormal to float round-off.
  u = stiefel.retract_blocks(u, joint, 2) * col
  return u, losses


def train_lowrank(key, data, mask, rank_mask, cfg: TrainConfig) -> TrainResult:
  """Train the K-subspace denoiser on one training set (vmappable, pure).

  Args:
    key: PRNG key (initialization and the Monte Carlo noise).
    data: training points `[N_max, D]`, padded rows allowed.
    mask: `[N_max]`, 1 for real rows, 0 for padding.
    rank_mask: `[R_max]` or `[K, R_max]`, 1 for the active columns of each
      `U_k`; inactive columns are kept at zero (a rank-r model in an
      `R_max`-column array).
    cfg: `TrainConfig` (static).

  Returns:
    `TrainResult(bases [K, D, R_max], losses [steps], restart_losses
    [restarts])`; for K = 1 `bases[0]` is the trained `U⋆`.
  """
  dtype = data.dtype
  r_max = rank_mask.shape[-1]
  cmask = jnp.broadcast_to(jnp.asarray(rank_mask, dtype), (cfg.num_components, r_max))
  mask = jnp.asarray(mask, dtype)
  data = data * mask[:, None]                 # padded rows can never leak in
  keys = jax.random.split(key, 1 + 2 * cfg.restarts)
  k_eval = keys[0]
  pairs = keys[1:].reshape(cfg.restarts, 2, *keys.shape[1:])
  bases, losses = jax.vmap(lambda k: _train_single(k, data, mask, cmask, cfg))(pairs)
  if cfg.objective == "expected":
    final = jax.vmap(lambda u: expected_denoising_loss(u[0], data, mask, cfg))(bases)
  else:
    ev = dataclasses.replace(cfg, noise_per_point=max(8, cfg.noise_per_point))
    final = jax.vmap(lambda u: mc_denoising_loss(u, k_eval, data, mask, cmask, ev))(bases)
  best = jnp.argmin(final)
  return TrainResult(bases[best], losses[best], final)


def initial_bases(key, data, mask, rank_mask, cfg: TrainConfig):
  """The starting point of every restart of `train_lowrank(key, …, cfg)`.

  Same keys and the same initializer (`cfg.init`) as the training run, so the
  initializer's own answer can be scored beside the trained one.  Pure and
  vmappable; shapes as in `train_lowrank`.

  Returns:
    `[restarts, K, D, R_max]`.
  """
  dtype = data.dtype
  cmask = jnp.broadcast_to(jnp.asarray(rank_mask, dtype),
                           (cfg.num_components, rank_mask.shape[-1]))
  mask = jnp.asarray(mask, dtype)
  data = data * mask[:, None]
  keys = jax.random.split(key, 1 + 2 * cfg.restarts)[1:]
  pairs = keys.reshape(cfg.restarts, 2, *keys.shape[1:])
  return jax.vmap(lambda k: _init_bases(k[0], data, mask, cmask, cfg))(pairs)


def check_trained(res: TrainResult, cfg: TrainConfig) -> TrainResult:
  """`res` if every loss and basis is finite; else `validation.DivergedError`
  naming the first non-finite step (and cell of a grid).  Skipped when traced.
  """
  if validation.is_traced(res.losses):
    return res
  losses = np.asarray(res.losses)
  where = validation.first_non_finite(losses)
  if where is not None:
    cell = f" of cell {where[0]}" if losses.ndim == 2 else ""
    what = f"loss {losses[where]} at step {where[-1] + 1}{cell}"
  elif validation.first_non_finite(res.bases) is not None:
    what = "bases after training"
  else:
    return res
  raise validation.DivergedError(
      f"low-rank training diverged: non-finite {what} (learning_rate={cfg.learning_rate}, "
      f"optimizer={cfg.optimizer!r}); lower the learning rate.")


@compile_friendly_rng
@functools.partial(jax.jit, static_argnames=("cfg",))
def _train_grid(keys, data, mask, rank_mask, cfg: TrainConfig) -> TrainResult:
  return jax.vmap(train_lowrank, in_axes=(0, 0, 0, 0, None))(
      keys, data, mask, rank_mask, cfg)


def train_grid(keys, data, mask, rank_mask, cfg: TrainConfig) -> TrainResult:
  """`train_lowrank` over a grid of cells in one compiled program.

  Args:
    keys: `[C]` keys; data `[C, N_max, D]`; mask `[C, N_max]`;
    rank_mask: `[C, R_max]` or `[C, K, R_max]`.

  Returns:
    `TrainResult(bases [C, K, D, R_max], losses [C, steps])`.

  Raises:
    validation.DivergedError: a loss or basis is NaN or inf (`check_trained`).
  """
  return check_trained(_train_grid(keys, data, mask, rank_mask, cfg), cfg)


_train_one = compile_friendly_rng(jax.jit(train_lowrank, static_argnames=("cfg",)))


def train_one(key, data, mask, rank_mask, cfg: TrainConfig) -> TrainResult:
  """`jax.jit(train_lowrank)`: one cell, compiled per shape; checked by `check_trained`."""
  return check_trained(_train_one(key, data, mask, rank_mask, cfg), cfg)


# PCA --------------------------------------------------------

def pca_basis(data, mask, rank_mask):
  """PCA solution: top-r left singular subspace of `Y = dataᵀ [D, N]`.

  One SVD of Y (not an eigendecomposition of `Y Yᵀ`, which squares the
  condition number).  Ties, e.g. the zero singular values when `N < r`, are
  broken arbitrarily: the PCA solution is then not unique.  Use float64 for a
  reference when `σ_r(Y)` is tiny (N = r).

  Args:
    data: `[N_max, D]`; mask: `[N_max]`; rank_mask: `[R_max]` (R_max ≤ D).

  Returns:
    `[D, R_max]`, orthonormal active columns, zero padding.
  """
  y = data * jnp.asarray(mask, data.dtype)[:, None]
  u, _, _ = jnp.linalg.svd(y.T, full_matrices=True)         # descending
  return u[:, :rank_mask.shape[-1]] * jnp.asarray(rank_mask, data.dtype)[None, :]


def pca_objective(basis, data, mask):
  """`‖Uᵀ Y‖_F²` over the unmasked rows.  `basis [D, R]`, `data [N, D]`."""
  return jnp.sum(jnp.asarray(mask, data.dtype) * jnp.sum(jnp.square(data @ basis), -1))
