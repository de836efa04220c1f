"""LOCO edit directions of trained denoisers (low-dim talk: LOCO Edit, Chen et al.,
NeurIPS 2024; docs/theory.md §6.2).

Claim: at an intermediate noise level the posterior mean `D(x_t)` is locally
linear and its Jacobian, restricted to an image region Ω, is low-rank; its
top right singular vectors, with the directions that change the outside of Ω
projected out, are edit directions: `x_t + λ v` changes the generated image
inside Ω and (nearly) nowhere else, the same direction does the same on other
images (homogeneity, transfer) and directions add (composability).

For every network (`digits_members`, the generalizing N of the cross-model
matrix, every seed) and `num_images` images generated from fixed noises, the
sampler is stopped at `σ_edit = σ_VP(t_edit)`, the `k` LOCO directions are
found matrix-free (`analysis.loco.masked_directions`, `null_k` directions
projected out), and, with `Δ(v) = D(x_t + λ v) − D(x_t)`:

- local linearity `‖Δ(λ v) − λ J v‖ / ‖λ J v‖` against λ (a multiple of σ_edit);
- localization: the share `‖P_Ω Δ‖² / ‖Δ‖²` of the change inside Ω, of the
  posterior mean and of the finished sample, against two baselines: a random
  unit direction and the top direction without the projection (`null_k = 0`);
- transfer: the cosine between `Δ_i(v_i)` and `Δ_j(v_i)` (image i's direction
  applied to image j's `x_t`), against the same for a random direction;
- composability `‖Δ(v1 + v2) − Δ(v1) − Δ(v2)‖ / ‖Δ(v1) + Δ(v2)‖`;
- the rank ratio of `P_Ω J` over its |Ω| rows (exact Jacobian).

On MoLRG (D = 48, the `jacobian_rank` MoLRG networks and the exact posterior
mean), where the answer is known, the edit's change must stay on the data
subspaces (share of `‖Δ‖²` on their span).  CIs: percentile bootstrap over
the images and the seeds.  Noise convention: VE, `x = x0 + σ ε`; images
`[8, 8, 1]` in [−1, 1].

`measure` writes edits.npz (the edit figure's samples); `render` draws
edits.png and loco.png and writes report.md.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import plotting
from repro_jax import samplers
from repro_jax import settings as settings_lib
from repro_jax.analysis import bootstrap
from repro_jax.analysis import jacobian as jac_lib
from repro_jax.analysis import loco
from repro_jax.diffusion import denoiser as denoiser_lib
from repro_jax.diffusion import schedules
from repro_jax.networks import model_zoo
from repro_jax.networks import training
from repro_jax.studies import _zoo_study
from repro_jax.studies import jacobian_rank
from repro_jax.studies import verdicts as verdicts_lib

VARIANTS = ("cpu", "smoke", "paper")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """Networks, edit time, region, directions and the criteria."""
  seed: int = 0
  # Digits networks: `jacobian_rank`'s members (the cross-model matrix models),
  # the generalizing N (digits_sizes[1]) of every seed.
  zoo: model_zoo.ZooSettings = dataclasses.field(
      default_factory=lambda: _zoo_study.zoo_settings("cpu"))
  digits_members: tuple[tuple[str, str, int, str], ...] = (
      ("MLP EDM", "mlp", 128, "edm"), ("DiT EDM", "dit", 32, "edm"))
  digits_sizes: tuple[int, ...] = (16, 1797)
  digits_seeds: tuple[int, ...] = (0, 1, 2)
  # MoLRG: `jacobian_rank`'s MoLRG networks (generalizing N) and the exact one.
  molrg: model_zoo.ZooSettings = dataclasses.field(
      default_factory=lambda: jacobian_rank.settings("cpu").molrg)
  num_images: int = 16
  noise_seed: int = 3
  steps: int = 18                    # Heun on the EDM ρ-grid (σ from 80 to 0.002)
  t_edit: float = 0.4                # VP time of the edit: σ_edit = σ_VP(t_edit)
  # The region Ω: rows/cols [lo, hi) of the image (a centred 4×4 square of 8×8);
  # on MoLRG the first `molrg_region` coordinates.
  region: tuple[int, int, int, int] = (2, 6, 2, 6)
  molrg_region: int = 12
  k: int = 3
  null_k: int = 16
  # Fewer than the rank K·r = 8 of the MoLRG Jacobian: projecting out as many
  # directions as J's rank leaves nothing of J to edit with.
  molrg_null_k: int = 4
  oversample: int = 8
  power_iters: int = 2
  lambdas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)   # × σ_edit
  lam: float = 1.0                  # the λ (× σ_edit) of the localization, transfer, sum
  figure_lambdas: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)
  figure_images: int = 4
  tau: float = 1e-2                 # rank ratio threshold of P_Ω J
  exact_max_dim: int = 1024         # exact P_Ω J up to this D, else its top `topk` values
  topk: int = 128
  # Criteria (declared before measuring).
  max_linearity_err: float = 0.2    # at λ <= lam: CI upper bound
  min_localization: float = 0.8     # share inside Ω (posterior mean): CI lower bound
  min_transfer: float = 0.5         # cosine of the two changes: CI lower bound
  max_composition_err: float = 0.2  # CI upper bound
  max_masked_rank_ratio: float = 0.5
  min_on_support: float = 0.9       # MoLRG network: share of the change on the subspaces
  bootstrap_resamples: int = 1000
  ci_level: float = 0.95

  def __post_init__(self):
    if not 0 < self.t_edit < 1:
      raise ValueError(f"t_edit must be in (0, 1); got {self.t_edit}.")
    lo_r, hi_r, lo_c, hi_c = self.region
    if not (0 <= lo_r < hi_r and 0 <= lo_c < hi_c):
      raise ValueError(f"region must be (row_lo, row_hi, col_lo, col_hi) with lo < hi; got "
                       f"{self.region}.")
    if self.k < 2 or self.null_k < 0 or self.molrg_null_k < 0:
      raise ValueError("k >= 2 (composability adds two directions) and null_k >= 0 are "
                       "required.")
    if self.lam not in self.lambdas or min(self.lambdas) <= 0:
      raise ValueError(f"lam must be one of lambdas (all > 0); got {self.lam}, "
                       f"{self.lambdas}.")
    if self.exact_max_dim < 1 or self.topk < 1:
      raise ValueError("exact_max_dim and topk must be >= 1.")
    if self.num_images < 2 or not 1 <= self.figure_images <= self.num_images:
      raise ValueError("num_images >= 2 (transfer pairs images) and 1 <= figure_images <= "
                       "num_images are required.")
    if len(self.digits_sizes) != 2 or not self.digits_members or not self.digits_seeds:
      raise ValueError("digits_sizes must be (memorization N, generalization N) and "
                       "digits_members, digits_seeds non-empty.")
    if not 0 < self.ci_level < 1 or self.bootstrap_resamples < 10:
      raise ValueError("ci_level must be in (0, 1) and bootstrap_resamples >= 10.")


_VARIANTS = {
    "cpu": {},
    "smoke": dict(zoo=_zoo_study.zoo_settings("smoke"),
                  digits_members=(("MLP EDM", "mlp", 16, "edm"),), digits_sizes=(8, 32),
                  digits_seeds=(0, 1), molrg=jacobian_rank.settings("smoke").molrg,
                  molrg_region=4, num_images=4, steps=6, k=2, null_k=8, molrg_null_k=2,
                  figure_images=2, bootstrap_resamples=50),
    # CIFAR-10 U-Nets and DiTs of the cross-model matrix (D = 3072): Ω the centred
    # 8×8 square of 32×32.
    "paper": dict(zoo=_zoo_study.zoo_settings("paper"),
                  digits_members=jacobian_rank.settings("paper").digits_members,
                  digits_sizes=(64, 32768), num_images=64, region=(12, 20, 12, 20),
                  null_k=64, figure_images=6),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default: digits MLPs and DiTs, MoLRG MLPs), `smoke` (seconds, tests) or
  `paper` (CIFAR-10 U-Nets and DiTs)."""
  if variant not in _VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  return settings_lib.override(Settings(), _VARIANTS[variant])


# Measurement ----------------------------------------------------------------------

def split_grid(sigmas, sigma_edit: float):
  """The σ grid cut at σ_edit: `(to_edit [.., σ_edit], from_edit [σ_edit, ..])`."""
  sigmas = np.asarray(sigmas, np.float64)
  return (np.concatenate([sigmas[sigmas > sigma_edit], [sigma_edit]]),
          np.concatenate([[sigma_edit], sigmas[sigmas < sigma_edit]]))


def region_mask(shape, s: Settings, molrg: bool = False) -> np.ndarray:
  """Ω as a 0/1 array of the data shape."""
  mask = np.zeros(shape, np.float32)
  if molrg:
    mask.reshape(-1)[:s.molrg_region] = 1.0
  else:
    r0, r1, c0, c1 = s.region
    mask[r0:r1, c0:c1] = 1.0
  return mask


def inside_share(delta, mask) -> np.ndarray:
  """`‖P_Ω Δ‖² / ‖Δ‖²` per row of `delta [..., *data_shape]`."""
  d = np.asarray(delta, np.float64)
  axes = tuple(range(d.ndim - mask.ndim, d.ndim))
  total = np.sum(d ** 2, axis=axes)
  return np.sum((d * mask) ** 2, axis=axes) / np.maximum(total, 1e-300)


def _flat(a, b):
  return np.asarray(a, np.float64).reshape(b, -1)


def _cos(a, b) -> np.ndarray:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  num = np.sum(a * b, axis=-1)
  return num / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-300)


def edit_measures(den, x_t, sigma_e: float, mask, s: Settings, key, *, null_k: int,
                  finish=None, bases=None) -> dict:
  """Every measure of one denoiser (a stack of M models) at `x_t [M·B, ...]`.

  Returns arrays `[M·B]` (averaged over the k directions where there are k):
  `linearity [L, M·B]` (one per λ), `inside`, `inside_random`, `inside_noproj`
  (and `*_final` of the finished samples when `finish` is given), `transfer`,
  `transfer_random`, `composition`, `masked_rank`, and `on_support` (with `bases`).
  """
  n, shape = x_t.shape[0], x_t.shape[1:]
  sig = jnp.full((n,), sigma_e, x_t.dtype)
  k_dir, k_np, k_rand = jax.random.split(key, 3)
  opts = dict(oversample=int(s.oversample), power_iters=int(s.power_iters))
  dirs = loco.masked_directions(den, x_t, sig, mask, k_dir, int(s.k), null_k=null_k, **opts)
  noproj = loco.masked_directions(den, x_t, sig, mask, k_np, 1, null_k=0, **opts)
  v = jnp.moveaxis(dirs.top.v, 2, 0).reshape((s.k, n) + shape)        # [k, n, ...]
  rand = jax.random.normal(k_rand, x_t.shape, x_t.dtype)
  rand = rand / jnp.linalg.norm(rand.reshape(n, -1), axis=1).reshape((n,) + (1,) * len(shape))
  v_np = noproj.top.v[:, :, 0].reshape(x_t.shape)
  x0 = den(x_t, sig)
  _, jvp, _ = jac_lib.linearize_rows(den, x_t, sig)

  def change(direction, lam):
    return den(x_t + lam * direction, sig) - x0

  out = {}
  lin = []
  for c in s.lambdas:
    lam = c * sigma_e
    errs = []
    for i in range(s.k):
      jv = jvp(v[i].reshape(n, -1)).reshape(x_t.shape)
      d = change(v[i], lam)
      errs.append(np.linalg.norm(_flat(d - lam * jv, n), axis=1)
                  / np.maximum(np.linalg.norm(_flat(lam * jv, n), axis=1), 1e-300))
    lin.append(np.mean(errs, axis=0))
  out["linearity"] = np.stack(lin)
  lam = s.lam * sigma_e
  deltas = [change(v[i], lam) for i in range(s.k)]
  d_rand, d_np = change(rand, lam), change(v_np, lam)
  out["inside"] = np.mean([inside_share(d, mask) for d in deltas], axis=0)
  out["inside_random"] = inside_share(d_rand, mask)
  out["inside_noproj"] = inside_share(d_np, mask)
  if finish is not None:
    base = finish(x_t)
    fin = [finish(x_t + lam * v[i]) - base for i in range(s.k)]
    out["inside_final"] = np.mean([inside_share(d, mask) for d in fin], axis=0)
    out["inside_random_final"] = inside_share(finish(x_t + lam * rand) - base, mask)
    out["inside_noproj_final"] = inside_share(finish(x_t + lam * v_np) - base, mask)
  # Transfer: image i's direction on image j = i + 1 (cyclic within each model).
  b = n // _models(den)
  perm = np.concatenate([m * b + (np.arange(b) + 1) % b for m in range(_models(den))])
  t_dir, t_rand = [], None
  for i in range(s.k):
    moved = change(v[i][perm], lam)                          # row r: image r's x_t, v of r+1
    t_dir.append(_cos(_flat(moved, n), _flat(deltas[i][perm], n)))
  out["transfer"] = np.mean(t_dir, axis=0)
  moved = change(rand[perm], lam)
  t_rand = _cos(_flat(moved, n), _flat(d_rand[perm], n))
  out["transfer_random"] = t_rand
  both = change(v[0] + v[1], lam)
  summed = deltas[0] + deltas[1]
  out["composition"] = (np.linalg.norm(_flat(both - summed, n), axis=1)
                        / np.maximum(np.linalg.norm(_flat(summed, n), axis=1), 1e-300))
  # The masked Jacobian's rank over its |Ω| rows: exact up to `exact_max_dim`, else
  # among its top `topk` singular values (matrix-free; saturates at topk / |Ω|).
  rows = np.asarray(mask).reshape(-1) > 0
  if rows.size <= s.exact_max_dim:
    jac = np.asarray(jac_lib.jacobian(den, x_t, sig))                # [n, D, D]
    sv = np.linalg.svd(jac[:, rows, :], compute_uv=False)
  else:
    _, jvp_m, vjp_m = jac_lib.linearize_rows(den, x_t, sig)
    inside = jnp.asarray(rows, x_t.dtype)
    sv = np.asarray(jac_lib.randomized_svd(
        lambda t: inside * jvp_m(t), lambda c: vjp_m(inside * c), n, rows.size,
        jax.random.fold_in(key, 7), min(int(s.topk), int(rows.sum())), **opts).s)
  out["masked_rank"] = np.asarray(jac_lib.rank_ratio(sv, s.tau, int(rows.sum())))
  if bases is not None:
    span = np.asarray(bases).transpose(1, 0, 2).reshape(np.asarray(bases).shape[1], -1)
    on = [np.sum((_flat(d, n) @ span) ** 2, axis=1) / np.maximum(
        np.sum(_flat(d, n) ** 2, axis=1), 1e-300) for d in deltas]
    out["on_support"] = np.mean(on, axis=0)
  return {k_: np.asarray(val) for k_, val in out.items()}


def _models(den) -> int:
  return int(den.num_models or 1)


def _start(den, noise, pre):
  """Every model of `den` from the same noises to σ_edit: `x_t [M·B, ...]` (model-major)."""
  m = _models(den)
  z = jnp.tile(jnp.asarray(noise), (m,) + (1,) * (noise.ndim - 1))
  res = samplers.sample(den, z, jnp.asarray(pre, z.dtype), sampler="heun")
  return res.samples


def _finisher(den, post):
  grid = jnp.asarray(post, jnp.float32)

  def finish(x_t):
    return np.asarray(samplers.sample(den, x_t / grid[0], grid, sampler="heun").samples)
  return finish


def measure(s: Settings, ctx) -> dict:
  t_start = time.time()
  key = jax.random.key(int(s.seed))
  sched = schedules.get_schedule("vp")
  sigma_e = float(sched.sigma(jnp.asarray(s.t_edit, jnp.float32)))
  pre, post = split_grid(schedules.edm_sigmas(int(s.steps)), sigma_e)
  progress = ctx.progress(2 + len(s.digits_members) + 2)
  ds = data_lib.load_dataset(s.zoo.train.data)
  noise = np.asarray(jax.random.normal(jax.random.key(int(s.noise_seed)),
                                       (int(s.num_images),) + ds.data_shape, jnp.float32))
  mask = region_mask(ds.data_shape, s)
  n_gen = int(s.digits_sizes[1])
  out = {"sigma_edit": sigma_e, "subjects": {}, "region_pixels": int(mask.sum()),
         "dim": int(mask.size)}
  figure = {}
  for mi, member in enumerate(s.digits_members):
    group = jacobian_rank.member_group(s, member, ds)
    den, m = jacobian_rank.network_stack(group, n_gen)
    progress.step(f"{group.name} restored")
    x_t = _start(den, noise, pre)
    res = edit_measures(den, x_t, sigma_e, mask, s, jax.random.fold_in(key, mi),
                        null_k=int(s.null_k), finish=_finisher(den, post))
    out["subjects"][member[0]] = _summarize(res, m, s, jax.random.fold_in(key, 100 + mi))
    if mi == 0:   # the first seed's model on its first images (rows 0 … I−1)
      first = int(np.nonzero(group.sizes == n_gen)[0][0])
      single = training.network_denoiser(group.trainer, group.params[first])
      figure = _figure_samples(single, x_t[:int(s.figure_images)], sigma_e, mask, s, post,
                               jax.random.fold_in(key, 1000))
    progress.step(f"{member[0]} measured")
  # MoLRG.
  mds = data_lib.load_dataset(s.molrg.train.data)
  mgroup = model_zoo.ensure_zoo(s.molrg, mds, suffix="_molrg")[0]
  m_gen = int(s.molrg.sizes[1])
  bases = np.asarray(mds.extras["bases"])
  mmask = region_mask(mds.data_shape, s, molrg=True)
  mnoise = np.asarray(jax.random.normal(jax.random.key(int(s.noise_seed) + 1),
                                        (int(s.num_images),) + mds.data_shape, jnp.float32))
  progress.step(f"{mgroup.name} restored")
  for j, (label, (den, m)) in enumerate({
      f"MoLRG MLP N={m_gen}": jacobian_rank.network_stack(mgroup, m_gen),
      "exact MoLRG": (denoiser_lib.molrg(jnp.asarray(bases)), 1)}.items()):
    x_t = _start(den, mnoise, pre)
    res = edit_measures(den, x_t, sigma_e, mmask, s, jax.random.fold_in(key, 50 + j),
                        null_k=int(s.molrg_null_k), bases=bases)
    out["subjects"][label] = _summarize(res, m, s, jax.random.fold_in(key, 200 + j))
  progress.step("MoLRG measured")
  io.save_npz(ctx.workdir / "edits.npz", **figure)
  out["seconds"] = time.time() - t_start
  progress.step("done")
  return out


def _figure_samples(single, x, sigma_e, mask, s: Settings, post, key) -> dict:
  """Finished samples of one model from `x [I, ...]` (at σ_edit) along its top
  direction, λ over `figure_lambdas` (× σ_edit): `samples [I, L, ...]`."""
  dirs = loco.masked_directions(single, x, sigma_e, mask, key, 1, null_k=int(s.null_k),
                                oversample=int(s.oversample), power_iters=int(s.power_iters))
  v = dirs.top.v[:, :, 0].reshape(x.shape)
  finish = _finisher(single, post)
  rows = [finish(x + c * sigma_e * v) for c in s.figure_lambdas]
  return {"samples": np.stack(rows, 1), "lambdas": np.asarray(s.figure_lambdas),
          "mask": np.asarray(mask)}


def _estimate(values, m: int, s: Settings, key) -> bootstrap.Estimate:
  """Mean over models × images of `values [..., M·B]` (the seeds one stratum)."""
  v = np.asarray(values, np.float64)
  v = v.reshape(v.shape[:-1] + (m, v.shape[-1] // m))
  return bootstrap.model_estimate(v, key, strata=np.zeros(m, np.int64),
                                  num_resamples=int(s.bootstrap_resamples),
                                  level=float(s.ci_level))


def _summarize(res: dict, m: int, s: Settings, key) -> dict:
  out = {"num_models": m}
  for i, (name, values) in enumerate(sorted(res.items())):
    est = _estimate(values, m, s, jax.random.fold_in(key, i))
    out[name] = {"value": np.round(np.asarray(est.value, np.float64), 5).tolist(),
                 "ci": np.round(np.asarray(est.ci, np.float64), 5).tolist()}
  return out


# Verdicts ---------------------------------------------------------------------------

def _v(row, name, index=None):
  val, ci = row[name]["value"], row[name]["ci"]
  if index is not None:
    val, ci = val[index], ci[index]
  return [round(float(val), 4), [round(float(c), 4) for c in ci]]


def verdicts(s: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  subj = metrics["subjects"]
  labels = [m[0] for m in s.digits_members]
  src = "low-dim talk (002), LOCO Edit (Chen et al., NeurIPS 2024); docs/theory.md §6.2"
  small = [i for i, c in enumerate(s.lambdas) if c <= s.lam]
  rows = []

  lin = {f"{lab}, λ={s.lambdas[i]:g}σ": _v(subj[lab], "linearity", i) for lab in labels
         for i in small}
  rows.append(verdicts_lib.judge(
      all(v[1][1] <= s.max_linearity_err for v in lin.values()),
      claim="Local linearity: D(x_t + λ v) ≈ D(x_t) + λ J v along the edit directions",
      criterion=f"CI upper bound of ‖Δ − λJv‖/‖λJv‖ ≤ {s.max_linearity_err:g} for "
                f"λ ≤ {s.lam:g} σ_edit",
      measured={"relative error [CI]": lin}, source=src))

  loc = {lab: {"LOCO": _v(subj[lab], "inside"), "random": _v(subj[lab], "inside_random"),
               "no projection": _v(subj[lab], "inside_noproj")} for lab in labels}
  ok = all(v["LOCO"][1][0] >= s.min_localization
           and v["LOCO"][1][0] > max(v["random"][1][1], v["no projection"][1][1])
           for v in loc.values())
  rows.append(verdicts_lib.judge(
      ok, claim="Localization: the edit changes the region Ω and (nearly) nothing outside",
      criterion=f"share of ‖Δ‖² inside Ω (posterior mean, λ = {s.lam:g} σ_edit): CI lower "
                f"bound ≥ {s.min_localization:g} and above the CI upper bounds of a random "
                "direction and of the unprojected top direction",
      measured={"share inside Ω [CI]": loc}, source=src))

  tr = {lab: {"LOCO": _v(subj[lab], "transfer"), "random": _v(subj[lab], "transfer_random")}
        for lab in labels}
  rows.append(verdicts_lib.judge(
      all(v["LOCO"][1][0] >= s.min_transfer and v["LOCO"][1][0] > v["random"][1][1]
          for v in tr.values()),
      claim="Homogeneity and transfer: a direction found on one image does the same on another",
      criterion=f"cosine of Δ_i(v_i) and Δ_j(v_i): CI lower bound ≥ {s.min_transfer:g} and "
                "above a random direction's CI upper bound",
      measured={"cosine [CI]": tr}, source=src))

  comp = {lab: _v(subj[lab], "composition") for lab in labels}
  rows.append(verdicts_lib.judge(
      all(v[1][1] <= s.max_composition_err for v in comp.values()),
      claim="Composability: two directions together ≈ the sum of their edits",
      criterion=f"CI upper bound of ‖Δ(v1+v2) − Δ(v1) − Δ(v2)‖/‖Δ(v1)+Δ(v2)‖ ≤ "
                f"{s.max_composition_err:g} at λ = {s.lam:g} σ_edit",
      measured={"relative error [CI]": comp}, source=src))

  rk = {lab: _v(subj[lab], "masked_rank") for lab in labels}
  rows.append(verdicts_lib.judge(
      all(v[1][1] <= s.max_masked_rank_ratio for v in rk.values()),
      claim="The Jacobian restricted to the region is low-rank",
      criterion=f"rank ratio (τ = {s.tau:g}) of P_Ω J over its |Ω| rows: CI upper bound ≤ "
                f"{s.max_masked_rank_ratio:g}",
      measured={"rank ratio [CI]": rk}, source=src))

  net = [k for k in subj if k.startswith("MoLRG MLP")][0]
  on = {net: _v(subj[net], "on_support"), "exact MoLRG": _v(subj["exact MoLRG"], "on_support")}
  rows.append(verdicts_lib.judge(
      on[net][1][0] >= s.min_on_support,
      claim="MoLRG: a trained network's edits stay on the data subspaces (as the exact "
            "posterior mean's do)",
      criterion=f"share of ‖Δ‖² on span(U_1 … U_K): CI lower bound ≥ {s.min_on_support:g}",
      measured={"share on the subspaces [CI]": on}, source=src))
  return rows


# Report -----------------------------------------------------------------------------

def render(s: Settings, metrics: dict, workdir) -> None:
  """edits.png, loco.png and report.md."""
  workdir = pathlib.Path(workdir)
  plt = plotting.pyplot()
  subj = metrics["subjects"]
  path = workdir / "edits.npz"
  if path.exists():
    fig_data = np.load(path)
    samples, lams = fig_data["samples"], fig_data["lambdas"]
    n_img, n_lam = samples.shape[:2]
    fig, axes = plt.subplots(n_img, n_lam, figsize=(1.6 * n_lam, 1.6 * n_img), squeeze=False)
    r0, r1, c0, c1 = s.region
    for i in range(n_img):
      for j in range(n_lam):
        ax = axes[i, j]
        ax.imshow(np.clip(samples[i, j, ..., 0], -1, 1), cmap="gray", vmin=-1, vmax=1)
        ax.add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False,
                                   ec="r", lw=1))
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
          ax.set_title(f"λ = {lams[j]:g} σ_e", fontsize=8)
    fig.suptitle(f"LOCO edits ({s.digits_members[0][0]}, top direction, red: Ω)", fontsize=9)
    fig.tight_layout()
    io.save_figure(fig, workdir / "edits.png", dpi=110)
    plt.close(fig)

  labels = [m[0] for m in s.digits_members]
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
  for lab in labels:
    row = subj[lab]
    val = np.asarray(row["linearity"]["value"])
    ci = np.asarray(row["linearity"]["ci"])
    axes[0].errorbar(s.lambdas, val, yerr=np.abs(ci.T - val), marker="o", capsize=2, label=lab)
  axes[0].axhline(s.max_linearity_err, color="k", ls=":", lw=1, label="criterion")
  axes[0].set_xscale("log")
  axes[0].set_xticks(list(s.lambdas), [f"{c:g}" for c in s.lambdas])
  axes[0].minorticks_off()
  axes[0].set_xlabel("λ / σ_edit")
  axes[0].set_ylabel("‖Δ − λJv‖ / ‖λJv‖")
  axes[0].set_title("local linearity")
  axes[0].legend(fontsize=7)
  kinds = [("inside", "LOCO"), ("inside_noproj", "no projection"), ("inside_random", "random")]
  width = 0.8 / (2 * len(kinds))
  for li, lab in enumerate(labels):
    for ki, (name, what) in enumerate(kinds):
      for fi, suffix in enumerate(("", "_final")):
        if name + suffix not in subj[lab]:
          continue
        e = subj[lab][name + suffix]
        xpos = li + (2 * ki + fi) * width - 0.4 + width / 2
        axes[1].bar(xpos, e["value"], width, yerr=[[e["value"] - e["ci"][0]],
                                                   [e["ci"][1] - e["value"]]],
                    color=f"C{ki}", alpha=1.0 if fi == 0 else 0.5, capsize=2,
                    label=f"{what} ({'x̂0' if fi == 0 else 'final sample'})" if li == 0 else None)
  axes[1].axhline(s.min_localization, color="k", ls=":", lw=1)
  axes[1].axhline(metrics["region_pixels"] / metrics["dim"], color="0.5", ls="--", lw=1,
                  label="|Ω| / D")
  axes[1].set_xticks(range(len(labels)), labels)
  axes[1].set_ylabel("share of ‖Δ‖² inside Ω")
  axes[1].set_title("localization")
  axes[1].legend(fontsize=6)
  names = [("transfer", "transfer (cos)"), ("transfer_random", "transfer, random"),
           ("composition", "composition error"), ("masked_rank", "rank ratio of P_Ω J")]
  for li, lab in enumerate(labels):
    for ni, (name, what) in enumerate(names):
      e = subj[lab][name]
      axes[2].bar(li + ni * 0.2 - 0.3, e["value"], 0.2, color=f"C{ni}",
                  yerr=[[e["value"] - e["ci"][0]], [e["ci"][1] - e["value"]]], capsize=2,
                  label=what if li == 0 else None)
  axes[2].set_xticks(range(len(labels)), labels)
  axes[2].set_title("transfer, composability, masked rank")
  axes[2].legend(fontsize=6)
  fig.suptitle(f"LOCO edit measures at t = {s.t_edit:g} (σ_edit = {metrics['sigma_edit']:.3g}); "
               f"bars: {s.ci_level:.0%} CI", fontsize=9)
  fig.tight_layout()
  io.save_figure(fig, workdir / "loco.png", dpi=110)
  plt.close(fig)
  _report(s, metrics, workdir)


def _fmt(e) -> str:
  return f"{e['value']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"


def _report(s: Settings, metrics: dict, workdir: pathlib.Path) -> None:
  subj = metrics["subjects"]
  lam_i = list(s.lambdas).index(s.lam)
  rows = []
  for lab, row in subj.items():
    r = {"subject": lab, "models": row["num_models"]}
    lin = row["linearity"]
    r[f"linearity err (λ={s.lam:g}σ)"] = (f"{lin['value'][lam_i]:.3f} [{lin['ci'][lam_i][0]:.3f}, "
                                         f"{lin['ci'][lam_i][1]:.3f}]")
    for name, col in (("inside", "inside Ω"), ("inside_final", "inside Ω (final)"),
                      ("inside_random", "inside Ω, random"),
                      ("inside_noproj", "inside Ω, no projection"),
                      ("transfer", "transfer"), ("transfer_random", "transfer, random"),
                      ("composition", "composition err"), ("masked_rank", "rank ratio P_Ω J"),
                      ("on_support", "on the subspaces")):
      if name in row:
        r[col] = _fmt(row[name])
    rows.append(r)
  r0, r1, c0, c1 = s.region
  text = f"""## LOCO edit directions (low-dim talk; docs/theory.md §6.2)

**Claim.** At an intermediate noise level the posterior mean is locally linear
and, restricted to a region Ω, its Jacobian is low-rank; its top right
singular vectors with the outside's leading directions projected out
(`P_Ω J (I − V_c V_cᵀ)`, found matrix-free by subspace iteration) are edit
directions: they change Ω and little else, transfer between images and add.

**Set-up.** {s.num_images} images per model from fixed noises (Heun, EDM grid of
{s.steps} steps), stopped at t = {s.t_edit:g} (σ_edit = {metrics['sigma_edit']:.3g}); Ω = rows
{r0}–{r1 - 1}, columns {c0}–{c1 - 1} ({metrics['region_pixels']} of {metrics['dim']} pixels);
k = {s.k} directions with {s.null_k} outside directions projected out
({s.oversample} extra test vectors, {s.power_iters} power steps); Δ at λ = {s.lam:g} σ_edit
unless stated. Networks: {', '.join(f'{m[0]} (width {m[2]}, {m[3]})' for m in s.digits_members)}
at N = {s.digits_sizes[1]}, {len(s.digits_seeds)} seeds (the cross-model matrix models). MoLRG:
Ω = the first {s.molrg_region} coordinates, {s.molrg_null_k} projected out. CIs:
{s.ci_level:.0%} percentile bootstrap over images and seeds.

![edits](edits.png)

![measures](loco.png)

{io.markdown_table(rows)}
{verdicts_lib.table(metrics["verdicts"])}
{_reading(s, metrics)}
"""
  io.write_text(workdir / "report.md", text)


def _reading(s: Settings, metrics: dict) -> str:
  """What the numbers beside the verdicts say (from metrics.json)."""
  subj = metrics["subjects"]
  labels = [m[0] for m in s.digits_members]
  lines = []
  tr = "; ".join(f"{lab} {subj[lab]['transfer']['value']:.2f} against "
                 f"{subj[lab]['transfer_random']['value']:.2f}" for lab in labels)
  lines.append(f"- Transfer (cosine, LOCO against a random direction): {tr}. A random "
               "direction's change also transfers: at this noise level J varies little "
               "from image to image, so a transfer test needs that baseline.")
  rk = "; ".join(f"{lab} {subj[lab]['masked_rank']['value']:.2f}" for lab in labels)
  lines.append(f"- Rank ratio of P_Ω J over its {metrics['region_pixels']} rows at τ = "
               f"{s.tau:g}: {rk} (jacobian_rank shows how such ratios move with τ).")
  ex, net = subj.get("exact MoLRG"), [k for k in subj if k.startswith("MoLRG MLP")]
  if ex and net:
    lines.append(
        f"- MoLRG: no vector of the {2 * int(s.molrg.train.data.molrg.rank)}-dimensional "
        f"span of the subspaces vanishes outside {s.molrg_region} of "
        f"{int(s.molrg.train.data.molrg.dim)} coordinates, so even the exact posterior "
        f"mean cannot localize an edit (share inside Ω {ex['inside']['value']:.2f}); what "
        "it does is stay on the subspaces (share "
        f"{ex['on_support']['value']:.2f}); the network: "
        f"{subj[net[0]]['on_support']['value']:.2f}.")
  return "**Reading.**\n" + "\n".join(lines)
