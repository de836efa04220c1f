"""Convergence in the memorization regime and the memorization onset time against N.

Part of `reproducibility_across_models`.  Members are observed along their
training (`model_zoo.ensure_stages`: one run, stopped at each step count of
`convergence_steps`); at each stage the models are sampled from the shared
noises and scored:

- at N = `convergence_size`: RP between the seeds of each member, RP across
  the members (architectures) and RP of each member to the empirical
  denoiser ε* (Theorem 1: memorizing models converge to it), each with a
  bootstrap interval over noises and seeds;
- for the first convergence member at every N of `onset_sizes`: GL of each
  model.  A model's memorization onset is the step at which its GL first falls
  to `onset_gl` (interpolated in log-steps between stages; NaN when it never
  does, or already at the first stage), and `onset ∝ N^a` is fitted in log-log
  with a Student-t interval on `a`.

Samples `[M, B, H, W, C]` in [−1, 1] from the noises `z [B, H, W, C]` with the
study's reference sampler, `x_σ = x0 + σ ε`.
"""

from __future__ import annotations

import jax
import numpy as np
import scipy.stats

from repro_jax import io
from repro_jax import plotting
from repro_jax.analysis import bootstrap
from repro_jax.analysis import reproducibility as rpr
from repro_jax.networks import model_zoo


def onset_steps(steps, gl, threshold: float) -> float:
  """First step at which `gl [S]` (at ascending `steps [S]`) falls to `threshold`,
  interpolated linearly in log-steps; NaN if it never does or already does at
  the first stage (the onset is then not bracketed)."""
  steps, gl = np.asarray(steps, np.float64), np.asarray(gl, np.float64)
  below = np.flatnonzero(gl <= threshold)
  if not below.size or below[0] == 0:
    return float("nan")
  k = int(below[0])
  g0, g1 = gl[k - 1], gl[k]
  f = (g0 - threshold) / (g0 - g1)
  return float(np.exp(np.log(steps[k - 1]) + f * (np.log(steps[k]) - np.log(steps[k - 1]))))


def fit_exponent(sizes, onsets, *, level: float) -> dict:
  """Least-squares `log onset = a log N + b` over the models with an onset, and the
  Student-t interval of `a` at `level` (exact for Gaussian residuals in log-steps;
  a bootstrap over three seeds per N under-covers).

  Args:
    sizes, onsets: `[K]` the N and the onset step of each model (NaN: none).

  Returns:
    `{"a", "a_lo", "a_hi", "b", "num_sizes"}`; NaN when fewer than 2 N have an
    onset (the interval also when there are only 2 points).
  """
  sizes, onsets = np.asarray(sizes, np.float64), np.asarray(onsets, np.float64)
  ok = np.isfinite(onsets)
  x, y = np.log(sizes[ok]), np.log(onsets[ok])
  num_sizes = int(np.unique(x).size)
  out = dict(a=float("nan"), a_lo=float("nan"), a_hi=float("nan"), b=float("nan"),
             num_sizes=num_sizes)
  if num_sizes < 2:
    return out
  a, b = np.polyfit(x, y, 1)
  out.update(a=float(a), b=float(b))
  dof = x.size - 2
  if dof > 0:
    resid = y - (a * x + b)
    se = np.sqrt(resid @ resid / dof / np.sum((x - x.mean()) ** 2))
    t = float(scipy.stats.t.ppf(0.5 + float(level) / 2, dof))
    out.update(a_lo=float(a - t * se), a_hi=float(a + t * se))
  return out


def measure(config, ds, sim, sample, member_config, key) -> dict:
  """Train (or restore) the staged members, sample every stage and score it.

  Args:
    config: the study's settings.
    ds: the data set.
    sim: the calibrated similarity.
    sample: `sample(denoiser)`: its samples from the shared noises with the
      reference sampler, `[M, B, ...]` for a stacked denoiser, else `[B, ...]`.
    member_config: `member_config(config, member)`: a member's `TrainSettings`.
    key: PRNG key of the bootstrap.

  Returns:
    `{"steps", "rows" (one per stage), "onset" (per model), "exponent"}`.
  """
  steps = sorted(int(s) for s in config.convergence_steps)
  n_conv = int(config.convergence_size)
  members = [config.members[int(i)] for i in config.convergence_members]
  onset_sizes = sorted({int(n) for n in config.onset_sizes} | {n_conv})
  subsets = model_zoo.nested_subsets(len(ds), onset_sizes, config.zoo.subset_seed)
  staged = {}
  for k, m in enumerate(members):
    sizes = onset_sizes if k == 0 else [n_conv]
    staged[m[0]] = model_zoo.ensure_stages(
        member_config(config, m), config.zoo.dir, f"{m[1]}{m[2]}_{m[3]}_stages",
        stages=steps, sizes=sizes, seeds=config.matrix_seeds, subsets=subsets,
        data_shape=ds.data_shape)
  theory = sample(rpr.empirical_denoisers(ds, {n_conv: subsets[n_conv]})[n_conv])
  level, r = float(config.ci_level), int(config.bootstrap_resamples)
  rows, gl_models = [], []
  for s_i, step in enumerate(steps):
    xs = {m[0]: sample(staged[m[0]][s_i].denoise) for m in members}
    row = dict(step=step)
    # Every member's models at N = n_conv, then ε*.
    parts = [(m[0], xs[m[0]][np.flatnonzero(staged[m[0]][s_i].sizes == n_conv)])
             for m in members]
    stack = np.concatenate([p[1] for p in parts] + [theory[None]])
    owner = np.concatenate([np.full(len(p[1]), j) for j, p in enumerate(parts)]
                           + [[len(parts)]])
    hits = rpr.pair_values(stack, {"cal": sim})["sim_cal"] > sim.threshold
    res = bootstrap.draw(jax.random.fold_in(key, step), stack.shape[1], owner, r)
    means = bootstrap.noise_means(hits, res)

    def cell(rows_sel, cols_sel):
      mask = bootstrap.pair_mask(rows_sel, cols_sel, distinct=True)
      return bootstrap.estimate(bootstrap.point_pair(hits, mask),
                                bootstrap.pair_mean(means, mask, res.models, res.models),
                                level)
    for j, (label, _) in enumerate(parts):
      for name, est in ((f"rp_seeds {label}", cell(owner == j, owner == j)),
                        (f"rp_theory {label}", cell(owner == j, owner == len(parts)))):
        row.update({name: est.value, f"{name} lo": est.lo, f"{name} hi": est.hi})
    if len(parts) > 1:
      est = cell(owner == 0, (owner > 0) & (owner < len(parts)))
      row.update({"rp_across": est.value, "rp_across lo": est.lo, "rp_across hi": est.hi})
    # GL of the first member's models at every N.
    g = staged[members[0][0]][s_i]
    x0 = xs[members[0][0]]
    gl = np.array([np.mean(rpr.max_similarities(x0[i], ds.x[subsets[int(n)]],
                                                {"cal": sim})["cal"] <= sim.threshold)
                   for i, n in enumerate(g.sizes)])
    gl_models.append(gl)
    for n in onset_sizes:
      sel = g.sizes == n
      row[f"gl N={n}"] = float(np.mean(gl[sel]))
    rows.append(row)
  gl_models = np.stack(gl_models, axis=1)                                # [M, S]
  g = staged[members[0][0]][0]
  onsets = [dict(N=int(n), seed=int(sd), onset=onset_steps(steps, gl_models[i],
                                                          float(config.onset_gl)))
            for i, (n, sd) in enumerate(zip(g.sizes, g.seeds))]
  exponent = fit_exponent([o["N"] for o in onsets], [o["onset"] for o in onsets], level=level)
  return dict(steps=steps, members=[m[0] for m in members], N=n_conv,
              onset_sizes=onset_sizes, rows=rows, onset=onsets, exponent=exponent,
              gl_models=gl_models.tolist())


def _series(rows, key):
  f = lambda k: np.array([float(r.get(k, np.nan)) for r in rows])
  return f(key), f(f"{key} lo"), f(f"{key} hi")


def _log_ticks(axis, values) -> None:
  """A log axis labelled at `values` only (plain numbers)."""
  axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")
  axis.set_ticks([float(v) for v in values], [str(int(v)) for v in values])
  axis.set_minor_locator(plotting.pyplot().NullLocator())


def figure(path, conv: dict, config) -> None:
  """RP against steps (log), GL against steps per N, onset against N (log-log)."""
  plt = plotting.pyplot()
  rows, steps = conv["rows"], conv["steps"]
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
  fig.subplots_adjust(wspace=0.32)
  ax = axes[0]
  curves = []
  for j, label in enumerate(conv["members"]):
    curves += [(f"rp_seeds {label}", "o-", colors[j], f"{label}: between seeds"),
               (f"rp_theory {label}", "s:", colors[j], f"{label}: to ε*")]
  if "rp_across" in rows[0]:
    curves.append(("rp_across", "^--", "k", " vs ".join(conv["members"][:1]) + " vs others"))
  for key, style, color, label in curves:
    y, lo, hi = _series(rows, key)
    ax.errorbar(steps, y, yerr=np.maximum(np.nan_to_num(np.stack([y - lo, hi - y])), 0),
                fmt=style, color=color, capsize=2, label=label)
  ax.axhline(config.min_rp_converged, color="grey", lw=0.8, ls="--")
  ax.set(xlabel="training steps", ylabel="RP", ylim=(-0.03, 1.03),
         title=f"memorization regime, N = {conv['N']} ({config.ci_level:.0%} CI)")
  _log_ticks(ax.xaxis, steps)
  ax.legend(fontsize=6.5)
  ax = axes[1]
  for j, n in enumerate(conv["onset_sizes"]):
    ax.plot(steps, [float(r[f"gl N={n}"]) for r in rows], "o-", color=colors[j % 10],
            label=f"N = {n}")
  ax.axhline(config.onset_gl, color="grey", lw=0.8, ls="--", label="onset level")
  ax.set(xlabel="training steps", ylabel="GL (mean over seeds)",
         ylim=(-0.03, 1.03), title=f"{conv['members'][0]}: GL during training")
  _log_ticks(ax.xaxis, steps)
  ax.legend(fontsize=7)
  ax = axes[2]
  on = [o for o in conv["onset"] if np.isfinite(float(o["onset"]))]
  ax.plot([o["N"] for o in on], [float(o["onset"]) for o in on], "o", color="k",
          label="onset of each model")
  e = conv["exponent"]
  if np.isfinite(float(e["a"])):
    ns = np.array(sorted({o["N"] for o in on}), np.float64)
    ax.plot(ns, np.exp(float(e["b"])) * ns ** float(e["a"]), "-", color="tab:red",
            label=f"∝ N^{float(e['a']):.2f} [{float(e['a_lo']):.2f}, {float(e['a_hi']):.2f}]")
    ax.plot(ns, np.exp(float(e["b"])) * ns[0] ** float(e["a"]) * ns / ns[0], ":",
            color="grey", label="∝ N (slope 1)")
  ax.set(xlabel="training set size N", ylabel=f"steps to GL ≤ {config.onset_gl:g}",
         title="memorization onset")
  if on:
    _log_ticks(ax.xaxis, conv["onset_sizes"])
    ax.set_yscale("log")
    ax.legend(fontsize=7)
  else:
    ax.text(0.5, 0.5, "no model reached the onset\nwithin the run", ha="center",
            va="center", transform=ax.transAxes)
  io.save_figure(fig, path)
