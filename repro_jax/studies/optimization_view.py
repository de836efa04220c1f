"""The optimization view (THEORY.md §2): diffusion sampling as distance minimization.

With exact denoisers (the empirical denoiser of a finite set K, and the MoLRG
posterior mean, whose K is the union of subspaces):

1. DDIM trajectories: the admissibility ratio `dist_K(x_t) / (sqrt(D) σ_t)`,
   the per-step shrink factor of `dist_K` against `β_t = 1 − σ_{t−1}/σ_t` and
   the η-band it implies, the identity `σ ε* = ½∇dist²_K(·, σ)` in float64, and
   the gap `‖x̂0 − proj_K(x_t)‖` as σ falls;
2. a sampler table at fixed NFE budgets and a schedule table at 10 steps on
   MoLRG, scored against the known true law (mean distance to the union of
   subspaces, sliced Wasserstein-2 to fresh true samples, per-component
   covariance error), mean ± std over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax.diffusion import denoiser_fn
from repro_jax.closed_form import denoisers
from repro_jax.studies import _descent as descent
from repro_jax.analysis import distribution_metrics as dm
from repro_jax.closed_form import geometry
from repro_jax import io
from repro_jax import samplers
from repro_jax.diffusion import schedules
from repro_jax.studies import _optimization_view_report as report_lib
from repro_jax import settings as settings_lib
from repro_jax.studies import verdicts as verdicts_lib



# Grids -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """Data, trajectories, the sampler and schedule tables, and the criteria."""
  seed: int = 0
  # MoLRG Σ_k (1/K) N(0, U_k U_kᵀ), orthogonal subspaces (low-dim talk).
  molrg_dim: int = 48
  molrg_components: int = 3
  molrg_rank: int = 4
  # Finite data set K for the trajectory diagnostics (empirical denoiser).
  finite_dataset: str = "digits"    # "digits" or "random" (uniform in [−1, 1]^random_dim)
  finite_num_train: int = 512
  random_dim: int = 64
  # Trajectory diagnostics: DDIM (σ-form) on three grids over the DDPM σ range.
  traj_num: int = 256
  traj_steps: tuple[int, ...] = (10, 20, 50, 100)
  traj_spacings: tuple[str, ...] = ("log_linear", "edm", "leading")
  traj_main_steps: int = 50         # trajectories drawn in the per-step figures
  identity_num: int = 64            # float64 trajectories for the gradient identity
  # Sampler table (NFE budgets) and schedule table, on MoLRG with its exact denoiser.
  num_samples: int = 10_000
  num_seeds: int = 3
  nfe: tuple[int, ...] = (5, 10, 20, 50)
  samplers: tuple[str, ...] = ("sigma_form", "gradient_estimation", "heun", "dpm_solver",
                               "dpm_solver_pp_2m", "ddpm")
  sampler_spacing: str = "leading"  # DDIM's uniform τ of the DDPM schedule, for every sampler
  schedule_steps: int = 10
  schedule_spacings: tuple[str, ...] = ("log_linear", "leading", "leading_offset", "edm")
  sw_projections: int = 256
  # Criteria: admissible with ν ≤ 2; dist_K shrinks (η₉₅ < 1); the identity to round-off.
  max_nu: float = 2.0
  max_eta_95: float = 1.0
  identity_tol: float = 1e-10


VARIANTS = ("cpu", "smoke", "paper")
_VARIANTS = {
    "cpu": {},
    "smoke": dict(finite_dataset="random", finite_num_train=64, random_dim=16, molrg_dim=16,
                  molrg_components=2, molrg_rank=2, traj_num=32, traj_steps=(10, 40),
                  traj_spacings=("log_linear",), traj_main_steps=40, identity_num=8,
                  num_samples=512, num_seeds=2, nfe=(5,),
                  samplers=("sigma_form", "gradient_estimation", "ddpm"), sw_projections=64),
    "paper": dict(finite_num_train=1797, traj_num=10_000, identity_num=256,
                  num_samples=50_000, num_seeds=5, nfe=(5, 10, 20, 50, 100),
                  sw_projections=1024),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default), `smoke` (seconds) or `paper` (more samples and seeds)."""
  if variant not in _VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  return settings_lib.override(Settings(), _VARIANTS[variant])


def schedule_grid(spacing: str, steps: int, final: str = "zero") -> np.ndarray:
  """See `_schedule_grid` (cached: discrete grids evaluate σ(t) with jnp on the host)."""
  return _schedule_grid(spacing, int(steps), final).copy()


@functools.lru_cache(maxsize=None)
def _schedule_grid(spacing: str, steps: int, final: str) -> np.ndarray:
  """A σ grid on the DDPM schedule (T = 1000, linear β).

  `leading` (DDIM uniform τ), `leading_offset` (τ + 1, like `steps_offset=1`),
  `trailing`, `uniform` and `quadratic` are sub-sequences of the DDPM steps;
  `log_linear` and `edm` are spaced over the same σ range as DDIM uniform with
  the same number of steps, so that only the spacing differs.
  """
  ddpm = schedules.get_schedule("ddpm")
  if spacing not in ("log_linear", "edm", "logsnr"):
    return schedules.sigma_grid(ddpm, steps, spacing, final=final)
  ref = schedules.sigma_grid(ddpm, steps, "leading", final=final)
  pos = ref[ref > 0]
  return schedules.sigma_grid(ddpm, steps, spacing, final=final, sigma_min=pos.min(),
                              sigma_max=pos.max())


def steps_for_nfe(sampler: str, nfe: int, spacing: str) -> tuple[int, int]:
  """Largest step count whose run costs ≤ `nfe` denoiser calls, and its cost."""
  del spacing  # the cost depends only on the grid's length and its final 0
  best = None
  for steps in range(1, nfe + 1):
    cost = samplers.num_evaluations(sampler, np.append(np.geomspace(1.0, 1e-3, steps), 0.0))
    if cost <= nfe:
      best = (steps, cost)
  if best is None:
    raise ValueError(f"sampler {sampler!r} cannot run within {nfe} evaluations.")
  return best


# Part 1: trajectories ----------------------------------------------------------------

def _finite_set(config, key):
  if config.finite_dataset == "digits":
    x, _ = data_lib.load_digits()
    idx = data_lib.subset_indices(key, x.shape[0], min(config.finite_num_train, x.shape[0]))
    return x[idx].reshape(len(idx), -1).astype(np.float32)
  if config.finite_dataset == "random":
    return np.asarray(jax.random.uniform(key, (config.finite_num_train, config.random_dim),
                                         minval=-1.0, maxval=1.0))
  raise ValueError(f"unknown finite_dataset {config.finite_dataset!r}; choose digits or random.")


def _geometry_fns(kind, support):
  """`(dist [M, D] -> [M], proj [M, D] -> [M, D])` for a finite set or a MoLRG."""
  if kind == "finite":
    return (lambda x: geometry.dist_finite(x, support),
            lambda x: geometry.proj_finite(x, support))
  return (lambda x: geometry.dist_subspaces(x, support),
          lambda x: geometry.proj_subspaces(x, support)[0])


def trajectory_diagnostics(kind, support, den, config, key):
  """Per (spacing, steps): ratios, shrink factors, β, required η, projection gaps."""
  dist_fn, proj_fn = _geometry_fns(kind, support)
  d = support.shape[1]
  z = jax.random.normal(key, (config.traj_num, d))
  out = []
  for spacing in config.traj_spacings:
    for steps in config.traj_steps:
      sig = schedule_grid(spacing, steps, final="min")
      res = samplers.sample(den, z, sig, sampler="sigma_form", return_trajectory=True)
      t1 = res.xs.shape[0]
      flat = res.xs.reshape(t1 * config.traj_num, d)
      dist = np.asarray(dist_fn(flat)).reshape(t1, -1)
      proj = proj_fn(flat[: (t1 - 1) * config.traj_num]).reshape(res.x0_hats.shape)
      gap = np.asarray(jnp.linalg.norm(res.x0_hats - proj, axis=-1))
      betas = descent.step_betas(sig)
      shrink = descent.shrink_factors(dist)
      out.append(dict(spacing=spacing, steps=int(steps), sigmas=sig, dist=dist,
                      ratio=descent.admissibility_ratio(dist, sig, d), betas=betas,
                      shrink=shrink, eta=descent.required_eta(shrink, betas), gap=gap,
                      rel_gap=gap / np.maximum(dist[:-1], 1e-30)))
  return out


def identity_along_trajectories(kind, support, config, key):
  """Max relative error of `½∇dist²_K = x − D` at each step of float64 DDIM runs."""
  with jax.enable_x64(True):
    sup = jnp.asarray(support, jnp.float64)
    if kind == "finite":
      den = denoiser_fn.empirical(sup)
      sq = lambda x, s: geometry.smoothed_sq_distance(x, sup, s)
    else:
      den = denoiser_fn.molrg(sup)
      sq = lambda x, s: descent.molrg_smoothed_sq_distance(x, sup, s)
    sig = schedule_grid(report_lib.MAIN_SPACING, config.traj_main_steps, final="min")
    z = jax.random.normal(key, (config.identity_num, sup.shape[1]), jnp.float64)
    xs = samplers.sample(den, z, sig, sampler="sigma_form", return_trajectory=True).xs
    err = jax.jit(lambda x, s: descent.identity_error(sq, den, x, s))
    worst = np.array([float(jnp.max(err(xs[t], jnp.float64(sig[t]))))
                      for t in range(len(sig))])
  return sig, worst


# Part 2: tables ----------------------------------------------------------------------

def _score(x, bases, ref, key, config):
  x = jnp.asarray(x)
  if not bool(jnp.all(jnp.isfinite(x))):
    return dict(dist=np.nan, sw=np.nan, cov=np.nan)
  return dict(dist=float(jnp.mean(geometry.dist_subspaces(x, bases))),
              sw=float(dm.sliced_wasserstein(key, x, ref,
                                             num_projections=config.sw_projections)),
              cov=float(dm.covariance_error(x, bases).mean))


def sampler_and_schedule_tables(bases, config, key):
  """Rows (one per seed) of the sampler table, the schedule table and the floor."""
  den = denoiser_fn.molrg(bases)
  d = bases.shape[1]
  n = int(config.num_samples)
  rows, sched_rows, floor = [], [], []
  for seed in range(int(config.num_seeds)):
    ks = jax.random.fold_in(key, seed)
    z = jax.random.normal(jax.random.fold_in(ks, 0), (n, d))
    ref, _ = denoisers.sample_molrg(jax.random.fold_in(ks, 1), bases, n)
    fresh, _ = denoisers.sample_molrg(jax.random.fold_in(ks, 2), bases, n)
    k_sw = jax.random.fold_in(ks, 3)
    k_noise = jax.random.fold_in(ks, 4)
    floor.append(dict(seed=seed, **_score(fresh, bases, ref, k_sw, config)))
    for sampler in config.samplers:
      for nfe in config.nfe:
        steps, cost = steps_for_nfe(sampler, int(nfe), config.sampler_spacing)
        sig = schedule_grid(config.sampler_spacing, steps)
        x = samplers.sample(den, z, sig, sampler=sampler, key=k_noise).samples
        rows.append(dict(seed=seed, sampler=sampler, nfe_budget=int(nfe), steps=steps,
                         nfe=cost, **_score(x, bases, ref, k_sw, config)))
    for spacing in config.schedule_spacings:
      sig = schedule_grid(spacing, config.schedule_steps)
      x = samplers.sample(den, z, sig, sampler="sigma_form").samples
      pos = sig[sig > 0]
      sched_rows.append(dict(seed=seed, spacing=spacing, sigma_max=float(pos.max()),
                             sigma_min=float(pos.min()),
                             **_score(x, bases, ref, k_sw, config)))
  return rows, sched_rows, floor


# Driver ------------------------------------------------------------------------------

def measure(config: Settings, ctx) -> dict:
  """Run both parts; writes the CSV tables and the figures (they need the trajectories)."""
  workdir = ctx.workdir
  t0 = time.time()
  key = jax.random.PRNGKey(config.seed)
  progress = ctx.progress(4)
  bases = np.asarray(denoisers.random_molrg_bases(
      jax.random.fold_in(key, 0), config.molrg_dim, config.molrg_components,
      config.molrg_rank))
  finite = _finite_set(config, jax.random.fold_in(key, 1))
  kinds = {"finite": (finite, denoiser_fn.empirical(finite)),
           "molrg": (bases, denoiser_fn.molrg(bases))}
  traj, ident = {}, {}
  for i, (kind, (support, den)) in enumerate(kinds.items()):
    traj[kind] = trajectory_diagnostics(kind, support, den, config,
                                        jax.random.fold_in(key, 10 + i))
    ident[kind] = identity_along_trajectories(kind, support, config,
                                              jax.random.fold_in(key, 20 + i))
    progress.step(f"{kind} trajectories")
  rows, sched_rows, floor = sampler_and_schedule_tables(bases, config,
                                                        jax.random.fold_in(key, 30))
  progress.step("tables")
  summary = _summarize(traj, ident, rows, sched_rows, floor, config)
  io.save_csv(workdir / "sampler_table.csv", rows)
  io.save_csv(workdir / "schedule_table.csv", sched_rows)
  io.save_csv(workdir / "true_sample_floor.csv", floor)
  io.save_csv(workdir / "trajectory_summary.csv", [
      dict(K=k, spacing=t["spacing"], steps=t["steps"],
           ratio_min=float(t["ratio"].min()), ratio_max=float(t["ratio"].max()),
           eta_median=float(np.median(t["eta"])),
           eta_95=float(np.quantile(t["eta"], 0.95)), eta_max=float(t["eta"].max()),
           shrink_max=float(t["shrink"].max()))
      for k, ts in traj.items() for t in ts])
  io.save_csv(workdir / "identity.csv", [
      dict(K=k, step=i, sigma=float(s), max_rel_error=float(e))
      for k, (sig, worst) in ident.items() for i, (s, e) in enumerate(zip(sig, worst))])
  out = dict(summary=summary, sampler_table=rows, schedule_table=sched_rows,
             true_sample_floor=floor, finite_set=dict(name=config.finite_dataset,
                                                      num_train=int(finite.shape[0]),
                                                      dim=int(finite.shape[1])),
             seconds=time.time() - t0)
  grids = {sp: schedule_grid(sp, config.schedule_steps) for sp in config.schedule_spacings}
  report_lib.figures(workdir, traj, ident, rows, sched_rows, floor, summary, config, grids)
  progress.step("figures")
  return out


def verdicts(config: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  """Admissibility, shrink factors, identity, projection, and the two orderings."""
  s = metrics["summary"]
  f, m = s["finite"], s["molrg"]
  src = "optimization view (talk); docs/theory.md §2"
  both = lambda key: dict(finite=f[key], molrg=m[key])
  ge = s["ge_beats_ddim"]
  return [
      verdicts_lib.judge(
          f["nu"] <= config.max_nu and m["nu"] <= config.max_nu,
          claim="Along DDIM trajectories dist_K(x_t) ≈ √D σ_t: the relative-error model is "
                "admissible.",
          criterion=f"ν ≤ {config.max_nu:g} (1–99 % quantiles of dist_K/(√D σ_t)) for both K",
          measured=both("nu"), source=src),
      verdicts_lib.judge(
          f["eta_95"] < config.max_eta_95 and m["eta_95"] < config.max_eta_95,
          claim="dist_K shrinks per DDIM step by a factor in (1 − β) ± βη.",
          criterion=f"95 % quantile of the fitted η < {config.max_eta_95:g} for both K",
          measured=both("eta_95"), source=src),
      verdicts_lib.judge(
          max(f["identity_max"], m["identity_max"]) < config.identity_tol,
          claim="The ideal denoiser is a gradient: σ ε*(x, σ) = ½∇dist²_K(x, σ).",
          criterion=f"worst relative error along float64 trajectories < {config.identity_tol:g}",
          measured=both("identity_max"), source=src),
      verdicts_lib.judge(
          f["gap_last"] < f["gap_first"] and m["gap_last"] < m["gap_first"],
          claim="The denoiser output x̂0 approaches the projection proj_K(x_t).",
          criterion="median ‖x̂0 − proj_K(x_t)‖ at the last step below the first step's",
          measured=dict(finite=[f["gap_first"], f["gap_last"]],
                        molrg=[m["gap_first"], m["gap_last"]]), source=src),
      verdicts_lib.judge(
          bool(ge) and all(ge.values()), partly=True,
          claim="The gradient-estimation sampler (γ = 2) beats DDIM at equal NFE.",
          criterion="lower mean sliced W₂ than DDIM at every NFE budget (MoLRG, exact denoiser)",
          measured=dict(ge_beats_ddim=ge, ge_beats_dpm_solver=s["ge_beats_dpm_solver"]),
          source=src),
      verdicts_lib.judge(
          s["schedule_order_agrees"],
          claim="At 10 steps the talk's schedule ordering (log-linear best) holds.",
          criterion="the ranking by sliced W₂ equals the talk's FID ranking",
          measured=dict(talk=s["schedule_order_talk"], here=s["schedule_order_by_sw"]),
          source=src + " (schedule table, trained CIFAR-10 model)"),
  ]


def render(config: Settings, metrics: dict, workdir) -> None:
  report_lib.report(workdir, metrics, config)


def _summarize(traj, ident, rows, sched_rows, floor, config) -> dict:
  s = {}
  for kind, ts in traj.items():
    main = next(t for t in ts if t["spacing"] == report_lib.MAIN_SPACING
                and t["steps"] == config.traj_main_steps)
    ratio = np.concatenate([t["ratio"].reshape(-1) for t in ts])
    eta = np.concatenate([t["eta"].reshape(-1) for t in ts])
    shrink = np.concatenate([t["shrink"].reshape(-1) for t in ts])
    lo, hi = np.quantile(ratio, [0.01, 0.99])
    nu = float(max(hi, 1.0 / lo))
    s[kind] = dict(
        ratio_q01=float(lo), ratio_q99=float(hi), ratio_min=float(ratio.min()),
        ratio_max=float(ratio.max()), nu=nu,
        eta_median=float(np.median(eta)), eta_95=float(np.quantile(eta, 0.95)),
        eta_max=float(eta.max()), shrink_max=float(shrink.max()),
        frac_shrinking=float(np.mean(shrink < 1.0)),
        identity_max=float(np.max(ident[kind][1])),
        gap_first=float(np.median(main["gap"][0])), gap_last=float(np.median(main["gap"][-1])),
        rel_gap_first=float(np.median(main["rel_gap"][0])),
        rel_gap_last=float(np.median(main["rel_gap"][-1])),
        rel_gap_max_median=float(np.max(np.median(main["rel_gap"], axis=1))))
  sw = report_lib.aggregate(rows, ("sampler", "nfe_budget"), "sw")
  order = {}
  for nfe in config.nfe:
    ranked = sorted(config.samplers, key=lambda smp: sw[(smp, nfe)][0])
    order[int(nfe)] = ranked
  s["sampler_order_by_sw"] = order
  ge_vs_ddim = {}
  if {"gradient_estimation", "sigma_form"} <= set(config.samplers):
    ge_vs_ddim = {int(n): bool(sw[("gradient_estimation", n)][0] < sw[("sigma_form", n)][0])
                  for n in config.nfe}
  s["ge_beats_ddim"] = ge_vs_ddim
  ge_vs_dpm = {}
  if {"gradient_estimation", "dpm_solver"} <= set(config.samplers):
    ge_vs_dpm = {int(n): bool(sw[("gradient_estimation", n)][0] < sw[("dpm_solver", n)][0])
                 for n in config.nfe if n in report_lib.TALK_SAMPLER_FID["dpm_solver"]}
  s["ge_beats_dpm_solver"] = ge_vs_dpm
  ssw = report_lib.aggregate(sched_rows, ("spacing",), "sw")
  s["schedule_order_by_sw"] = sorted(config.schedule_spacings, key=lambda k: ssw[(k,)][0])
  talk = [k for k in sorted(report_lib.TALK_SCHEDULE_FID, key=report_lib.TALK_SCHEDULE_FID.get)
          if k in config.schedule_spacings]
  s["schedule_order_talk"] = talk
  s["schedule_order_agrees"] = [k for k in s["schedule_order_by_sw"] if k in talk] == talk
  s["floor_sw"] = float(np.mean([f["sw"] for f in floor]))
  s["floor_cov"] = float(np.mean([f["cov"] for f in floor]))
  return s
