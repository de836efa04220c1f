"""Reproducibility of class-conditional diffusion models (reproducibility paper
§4.1, Fig. 7, App. C; docs/theory.md §5.4, §6.3).

Claims: (i) different conditional models (seeds, architectures) fed the same
noise and the same class generate the same image (RP_cond high); (ii) a
conditional and an unconditional model reproduce each other only when the
class of the conditional sample is the class the unconditional sample shows
(RP_between high, carried by the matching class).  Added here: whether RP_cond
survives classifier-free guidance, and the conditional models' RP to the
class-conditional closed form ε* (Fig. 6 per class) in both regimes.

Set-up.  Every conditional *member* (an architecture, a width, a kernel) is
trained with `model.num_classes = 10` and label dropout (label −1 = ∅) with
`seeds` at the generalization N (`sizes[-1]`, all digits) and, for
`memorization_members`, also at the memorization N (`sizes[0]`), on the zoo's
nested subsets, through `model_zoo` groups (trained once, restored).  The
unconditional members are the zoo groups of the cross-model matrix
(`uncond_sizes` × `seeds`), restored.  `num_noises` fixed noises z_b; each is
sampled by every conditional model with every class c and every guidance
scale w of `guidance_scales` in ONE sampler call per group (rows w-, then
class-, then noise-major; `diffusion.guidance`), by every unconditional
model, and by the class-conditional ε* of each training subset.  Sampler:
`sampler` on the EDM ρ-grid over the σ range every member was trained on,
x0 clipped to [−1, 1].

Scores, with the learned descriptor at its calibrated threshold (the zoo
studies' similarity; the pixel NCC at its calibrated threshold beside it),
over the classes present in the training subset:

- RP_cond between every two conditional models of an N (a cell per pair of
  members: the diagonal is between seeds), per class and over classes, at
  every w;
- RP_between(u, v) = P(max_c sim(x_u, x_v^c) > τ) for unconditional u and
  conditional v, and its class-resolved form: the conditional sample of
  class c against the unconditional one, split by whether c is the class of
  the unconditional sample (`classifier`: a logistic regression fitted on
  every digit with scikit-learn);
- RP of each conditional model (w = 1) to the conditional ε* of its subset.

Confidence intervals: percentile bootstrap over the noises (shared by every
model and class) and the seeds of each member (clusters), `ci_level`.  The
threshold band: every headline score at `band_points` thresholds around the
calibrated one (± `band_halfwidth`).

Noise convention: VE, `x = x0 + σ ε`; images `[H, W, C]` in [−1, 1].
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import samplers
from repro_jax import settings as settings_lib
from repro_jax.analysis import bootstrap
from repro_jax.analysis import metrics as metrics_lib
from repro_jax.analysis import reproducibility as rpr
from repro_jax.diffusion import guidance
from repro_jax.diffusion import schedules
from repro_jax.networks import model_zoo
from repro_jax.networks.models import PARAMETERIZATIONS
from repro_jax.networks.training.settings import WIDTH_FIELD
from repro_jax.studies import _conditional_report as report
from repro_jax.studies import _zoo_study
from repro_jax.studies import verdicts as verdicts_lib

VARIANTS = ("cpu", "smoke", "paper")
CLASS_READERS = ("logistic", "nearest")

# (label, model, width, parameterization) on the VP schedule's training kernel.
Member = tuple[str, str, int, str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(_zoo_study.ZooStudySettings):
  """The conditional and unconditional members, the sweep and the criteria."""
  members: tuple[tuple[str, str, int, str], ...] = (
      ("MLP EDM", "mlp", 128, "edm"), ("DiT EDM", "dit", 32, "edm"))
  # Members also trained at the memorization N (by label); all at sizes[-1].
  memorization_members: tuple[str, ...] = ("MLP EDM",)
  sizes: tuple[int, ...] = (16, 1797)            # (memorization N, generalization N)
  seeds: tuple[int, ...] = (0, 1, 2)
  num_classes: int = 10
  label_dropout: float = 0.1
  # The unconditional zoo groups (the cross-model matrix's), restored at these sizes.
  uncond_members: tuple[tuple[str, str, int, str], ...] = (
      ("MLP EDM", "mlp", 128, "edm"), ("DiT EDM", "dit", 32, "edm"))
  uncond_sizes: tuple[int, ...] = (16, 1797)
  num_noises: int = 64                           # per class: rows = classes × noises
  sampler: str = "heun"
  steps: int = 18
  clip_x0: bool = True
  guidance_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
  main_scale: float = 1.0                        # the conditional model itself
  # How the class of an unconditional sample is read: "logistic" (a logistic
  # regression on the pixels, scikit-learn, inverse L2 strength `classifier_c`) or
  # "nearest" (the label of the most similar training image, primary similarity).
  class_reader: str = "logistic"
  classifier_c: float = 1.0
  band_halfwidth: float = 0.05
  band_points: int = 9
  grid_noises: int = 2                           # noises shown in samples.png
  # Criteria (declared before measuring).
  min_rp_cond: float = 0.6        # the paper's reproducibility level (App. A): every pair
  min_rp_between: float = 0.6     # every (unconditional, conditional) pair of members
  min_rp_matched: float = 0.6     # the matching class carries RP_between ...
  max_rp_unmatched: float = 0.1   # ... the other classes do not (CI upper bound)
  min_rp_theory: float = 0.5      # RP to the class ε* at the memorization N ...
  min_rp_theory_drop: float = 0.3  # ... and how much lower at the generalization N

  def __post_init__(self):
    if not self.members or not self.uncond_members:
      raise ValueError("members and uncond_members must not be empty.")
    for m in self.members + self.uncond_members:
      if (len(m) != 4 or m[1] not in WIDTH_FIELD or int(m[2]) < 1
          or m[3] not in PARAMETERIZATIONS):
        raise ValueError(f"a member is (label, model in {sorted(WIDTH_FIELD)}, width >= 1, "
                         f"parameterization in {PARAMETERIZATIONS}); got {m}.")
    labels = [m[0] for m in self.members]
    if len(set(labels)) != len(labels):
      raise ValueError(f"member labels must be distinct; got {labels}.")
    if any(lab not in labels for lab in self.memorization_members):
      raise ValueError(f"memorization_members must name members {labels}; got "
                       f"{self.memorization_members}.")
    if len(self.sizes) != 2 or self.sizes[0] >= self.sizes[1] or self.sizes[0] < 1:
      raise ValueError(f"sizes must be (memorization N, generalization N), increasing; got "
                       f"{self.sizes}.")
    if len(self.seeds) < 2:
      raise ValueError("seeds needs at least 2 (RP between seeds).")
    if self.num_classes < 2 or not 0 < self.label_dropout < 1:
      raise ValueError("num_classes >= 2 and label_dropout in (0, 1) are required (the "
                       "null label is what guidance extrapolates from).")
    if not self.guidance_scales or self.main_scale not in self.guidance_scales:
      raise ValueError(f"guidance_scales must contain main_scale {self.main_scale}; got "
                       f"{self.guidance_scales}.")
    if self.num_noises < 2 or self.steps < 1 or self.band_points < 1 or self.grid_noises < 1:
      raise ValueError("num_noises >= 2, steps, band_points and grid_noises >= 1 are "
                       "required.")
    if self.class_reader not in CLASS_READERS:
      raise ValueError(f"class_reader must be one of {CLASS_READERS}; got "
                       f"{self.class_reader!r}.")
    if not 0 < self.ci_level < 1 or self.bootstrap_resamples < 10:
      raise ValueError("ci_level must lie in (0, 1) and bootstrap_resamples be >= 10.")


_SMOKE = dict(
    members=(("MLP EDM", "mlp", 16, "edm"),),
    uncond_members=(("MLP EDM", "mlp", 16, "edm"),), memorization_members=("MLP EDM",),
    sizes=(8, 32), uncond_sizes=(8, 32), seeds=(0, 1), num_noises=6, chunk=4, steps=4,
    guidance_scales=(0.0, 1.0, 3.0), band_points=3, grid_noises=1,
    learned=False)                # the pixel NCC (no descriptor to train in a test)
_VARIANT_CHANGES = {
    "cpu": {},
    "smoke": _SMOKE,
    # CIFAR-10: conditional U-Net and DiT (the paper's EDM-cond and UViT-cond), the
    # unconditional ones of the cross-model matrix's paper grid.
    "paper": dict(members=(("U-Net EDM", "unet", 128, "edm"), ("DiT EDM", "dit", 256, "edm")),
                  memorization_members=("U-Net EDM", "DiT EDM"),
                  uncond_members=(("U-Net EDM", "unet", 128, "edm"),
                                  ("DiT VP-eps", "dit", 256, "eps")),
                  sizes=(64, 32768), uncond_sizes=(64, 32768), num_noises=1000, chunk=8,
                  guidance_scales=(0.0, 1.0, 1.5, 2.0, 4.0), class_reader="nearest"),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default: digits MLPs and DiTs), `smoke` (seconds, tests) or `paper`
  (CIFAR-10 conditional U-Nets and DiTs)."""
  if variant not in _VARIANT_CHANGES:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  changes = _zoo_study.shared_changes(variant)
  zoo = changes.pop("zoo")
  changes.pop("num_noises", None)
  return settings_lib.override(Settings(zoo=zoo), dict(changes, **_VARIANT_CHANGES[variant]))


# Groups --------------------------------------------------------------------------

def member_sizes(s: Settings, member: Member) -> tuple[int, ...]:
  """The N a conditional member is trained at."""
  return tuple(int(n) for n in (s.sizes if member[0] in s.memorization_members
                                else s.sizes[-1:]))


def member_config(s: Settings, member: Member, sizes, *, conditional: bool):
  """The complete training settings of a member's group (`TrainSettings`)."""
  zoo = settings_lib.override(s.zoo, dict(model=member[1], sizes=tuple(sizes)), where="zoo")
  over = {"diffusion": dict(parameterization=member[3], schedule="vp")}
  if conditional:
    over["model"] = dict(num_classes=int(s.num_classes), label_dropout=float(s.label_dropout))
  return model_zoo.train_config(zoo, member[2], overrides=over)


def _group_name(member: Member, conditional: bool) -> str:
  return f"{member[1]}{member[2]}_{member[3]}" + ("_cond" if conditional else "")


def training_jobs(s: Settings) -> list[tuple[str, object, int]]:
  """`(what, TrainSettings, number of models)` of every group the study trains or
  restores (the unconditional ones are the cross-model matrix's, shared)."""
  jobs = []
  for m in s.members:
    sizes = member_sizes(s, m)
    jobs.append((f"{m[0]} conditional: ×{len(sizes)} sizes ×{len(s.seeds)} seeds",
                 member_config(s, m, sizes, conditional=True), len(sizes) * len(s.seeds)))
  for m in s.uncond_members:
    jobs.append((f"{m[0]}: ×{len(s.uncond_sizes)} sizes ×{len(s.seeds)} seeds",
                 member_config(s, m, s.uncond_sizes, conditional=False),
                 len(s.uncond_sizes) * len(s.seeds)))
  return jobs


def _group(s: Settings, member: Member, sizes, ds, *, conditional: bool) -> model_zoo.Group:
  subsets = model_zoo.nested_subsets(len(ds), sizes, s.zoo.subset_seed)
  return model_zoo.ensure_group(member_config(s, member, sizes, conditional=conditional),
                                s.zoo.dir, _group_name(member, conditional), sizes=sizes,
                                seeds=s.seeds, subsets=subsets, data_shape=ds.data_shape)


def sigma_range(s: Settings) -> tuple[float, float]:
  """The σ range every member was trained on (EDM: any σ; VP kernels: their schedule's)."""
  lo, hi = float(s.sigma_min), float(s.sigma_max)
  for m in s.members + s.uncond_members:
    if m[3] != "edm":
      sched = schedules.get_schedule("vp")
      lo, hi = max(lo, float(sched.sigma_min)), min(hi, float(sched.sigma_max))
  return lo, hi


def check(s: Settings, ds: data_lib.Dataset) -> None:
  """Refuse what the data cannot give, before any work."""
  if ds.labels is None:
    raise ValueError(f"conditional_models needs class labels; data set "
                     f"{s.zoo.train.data.name!r} has none.")
  if int(ds.labels.max()) >= s.num_classes or int(ds.labels.min()) < 0:
    raise ValueError(f"labels must lie in [0, {s.num_classes}); got "
                     f"[{int(ds.labels.min())}, {int(ds.labels.max())}].")
  if max(max(s.sizes), max(s.uncond_sizes)) > len(ds):
    raise ValueError(f"sizes must be <= {len(ds)} (the data's rows); got {s.sizes} and "
                     f"{s.uncond_sizes}.")
  if s.sizes[-1] not in s.uncond_sizes:
    raise ValueError(f"the generalization N {s.sizes[-1]} must be among uncond_sizes "
                     f"{s.uncond_sizes} (RP_between needs both at one N).")


# Sampling ------------------------------------------------------------------------

def rows(s: Settings, noise) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The sweep's rows: `(noise [W·C·B, ...], labels [W·C·B], w [W·C·B])`, w-major,
  then class, then noise."""
  c, w, b = int(s.num_classes), len(s.guidance_scales), len(noise)
  z = np.tile(np.asarray(noise, np.float32), (w * c,) + (1,) * (np.ndim(noise) - 1))
  labels = np.tile(np.repeat(np.arange(c, dtype=np.int32), b), w)
  scales = np.repeat(np.asarray(s.guidance_scales, np.float32), c * b)
  return z, labels, scales


def _wrap(s: Settings, den):
  return rpr.clipped(den) if s.clip_x0 else den


def _sample_chunks(s: Settings, den, noise, reps: int, sigmas) -> np.ndarray:
  """Sample `den`, built for rows `[reps · b]` (rep-major, then noise) of `b = min(chunk,
  B)` noises, over every noise in chunks of b (the last one padded): one compilation.

  Returns `[M, reps, B, ...]` for a stack of M models, else `[reps, B, ...]`."""
  noise = np.asarray(noise, np.float32)
  total = len(noise)
  b = min(int(s.chunk), total)
  parts = []
  for j in range(-(-total // b)):
    z = noise[j * b:(j + 1) * b]
    keep = len(z)
    if keep < b:
      z = np.concatenate([z, np.zeros((b - keep,) + z.shape[1:], z.dtype)])
    z = np.tile(z, (reps,) + (1,) * (z.ndim - 1))
    x = np.asarray(samplers.sample_batched(den, z, sigmas, sampler=s.sampler).samples)
    lead = x.shape[:-z.ndim] if den.stacked else ()
    x = x.reshape(lead + (reps, b) + z.shape[1:])
    parts.append(np.take(x, np.arange(keep), axis=len(lead) + 1))
  return np.concatenate(parts, axis=len(lead) + 1)


def sample_conditional(s: Settings, group: model_zoo.Group, noise, sigmas) -> np.ndarray:
  """Every model of a conditional group at every (w, class, noise): `[M, W, C, B, ...]`."""
  b = min(int(s.chunk), len(noise))
  _, labels, scales = rows(s, np.asarray(noise)[:b])
  den = _wrap(s, guidance.guided(group.trainer, group.params, labels, scales))
  w, c = len(s.guidance_scales), int(s.num_classes)
  out = _sample_chunks(s, den, noise, w * c, sigmas)                      # [M, W·C, B, ...]
  return out.reshape((out.shape[0], w, c) + out.shape[2:])


def sample_theory(s: Settings, ds, subset, classes, noise, sigmas) -> np.ndarray:
  """The class-conditional ε* of a training subset, every class of `classes`: `[C', B, ...]`."""
  b = min(int(s.chunk), len(noise))
  labels = np.repeat(np.asarray(classes, np.int32), b)
  den = _wrap(s, guidance.class_empirical(ds.x[subset], ds.labels[subset], labels))
  return _sample_chunks(s, den, noise, len(classes), sigmas)


# Scores --------------------------------------------------------------------------

def features(sim, x) -> np.ndarray:
  """Unit descriptor features `[..., F]` of images `[..., H, W, C]` (any batch shape)."""
  x = np.asarray(x, np.float32)
  lead = x.shape[:-3]
  f = np.asarray(sim.features(jnp.asarray(x.reshape((-1,) + x.shape[-3:]))))
  return f.reshape(lead + f.shape[-1:])


def classifier(s: Settings, ds: data_lib.Dataset, sim):
  """`(predict(x [B, ...]) -> int [B], training accuracy or None)`: the class reader.

  `"logistic"`: a logistic regression (scikit-learn) fitted on every image of the
  data; `"nearest"`: the label of the most similar image of the data under `sim`."""
  if s.class_reader == "nearest":
    train, labels = np.asarray(ds.x), np.asarray(ds.labels)
    return (lambda y: labels[np.asarray(metrics_lib.max_similarity(y, train, sim).index)],
            None)
  from sklearn.linear_model import LogisticRegression
  x = np.asarray(ds.x, np.float64).reshape(len(ds), -1)
  clf = LogisticRegression(C=float(s.classifier_c), max_iter=2000).fit(x, np.asarray(ds.labels))
  return (lambda y: clf.predict(np.asarray(y, np.float64).reshape(len(y), -1)).astype(np.int32),
          float(clf.score(x, np.asarray(ds.labels))))


def _est(e: bootstrap.Estimate) -> dict:
  return {"value": float(e.value), "ci": [float(e.lo), float(e.hi)]}


def pair_cells(hits, member_of, key, s: Settings, num_members: int) -> dict:
  """Mean RP over pairs of distinct models of every two members, with intervals.

  Args:
    hits: per-noise values `[..., K, K, B]` (leading dims ride along, e.g.
      thresholds and classes).
    member_of: `[K]` the member of each model (its seeds are exchangeable).

  Returns:
    `{"value", "lo", "hi"}` each `[..., E, E]`, and `"all"`: the mean over every
    pair of distinct models `{"value", "lo", "hi"}` each `[...]`.
  """
  member_of = np.asarray(member_of)
  res = bootstrap.draw(key, hits.shape[-1], member_of, int(s.bootstrap_resamples))
  means = bootstrap.noise_means(hits, res)
  lead = hits.shape[:-3]
  out = {k: np.full(lead + (num_members, num_members), np.nan) for k in ("value", "lo", "hi")}
  for e in range(num_members):
    for f in range(num_members):
      mask = bootstrap.pair_mask(member_of == e, member_of == f)
      if not mask.any():
        continue
      est = bootstrap.estimate(bootstrap.point_pair(hits, mask),
                               bootstrap.pair_mean(means, mask, res.models, res.models),
                               float(s.ci_level))
      out["value"][..., e, f], out["lo"][..., e, f], out["hi"][..., e, f] = (
          est.value, est.lo, est.hi)
  mask = bootstrap.pair_mask(np.ones(len(member_of), bool), np.ones(len(member_of), bool))
  est = bootstrap.estimate(bootstrap.point_pair(hits, mask),
                           bootstrap.pair_mean(means, mask, res.models, res.models),
                           float(s.ci_level))
  out["all"] = {"value": np.asarray(est.value), "lo": np.asarray(est.lo),
                "hi": np.asarray(est.hi)}
  return out


def _tolist(d: dict) -> dict:
  return {k: (_tolist(v) if isinstance(v, dict) else np.round(np.asarray(v, np.float64), 4)
              .tolist()) for k, v in d.items()}


def _worst_cell(cells: dict, labels) -> dict:
  v = np.asarray(cells["value"], np.float64)
  i, j = np.unravel_index(np.nanargmin(v), v.shape)
  return dict(pair=[labels[i], labels[j]], rp=float(v[i, j]),
              ci=[float(cells["lo"][i, j]), float(cells["hi"][i, j])])


def measure(s: Settings, ctx) -> dict:
  """Train or restore every group, sample the sweep, score."""
  t0 = time.time()
  ds = data_lib.load_dataset(s.zoo.train.data)
  check(s, ds)
  progress = ctx.progress(2 + len(s.members) + len(s.uncond_members) + 2)
  key = jax.random.key(int(s.seed))
  ds, sims, cal, noise, _, cal_learned = _zoo_study.setup(s, ctx.workdir,
                                                         jax.random.fold_in(key, 0))
  primary = "learned" if "learned" in sims else "cal"
  predict, clf_acc = classifier(s, ds, sims[primary])
  progress.step("calibration, descriptor, classifier")
  lo, hi = sigma_range(s)
  sigmas = rpr.sigma_grid(int(s.steps), lo, hi)
  sizes = [int(n) for n in s.sizes]
  subsets = model_zoo.nested_subsets(len(ds), sorted(set(sizes) | set(s.uncond_sizes)),
                                     s.zoo.subset_seed)
  classes = {n: np.unique(ds.labels[subsets[n]]).astype(np.int32) for n in subsets}
  # Conditional groups: samples [M, W, C, B, ...] per member.
  cond, t_train, groups_info = {}, 0.0, {}
  for m in s.members:
    g = _group(s, m, member_sizes(s, m), ds, conditional=True)
    t_train += float(g.info.get("train_seconds", 0.0))
    groups_info[g.name] = dict(workdir=g.workdir, **g.info)
    cond[m[0]] = (g, sample_conditional(s, g, noise, sigmas))
    progress.step(f"{m[0]} conditional")
  uncond = {}
  for m in s.uncond_members:
    g = _group(s, m, s.uncond_sizes, ds, conditional=False)
    groups_info[g.name] = dict(workdir=g.workdir, **g.info)
    uncond[m[0]] = (g, _zoo_study.sample(_wrap(s, g.denoise), noise, sigmas,
                                         sampler=s.sampler, chunk=int(s.chunk)))
    progress.step(f"{m[0]} unconditional")
  theory = {n: sample_theory(s, ds, subsets[n], classes[n], noise, sigmas) for n in sizes}
  progress.step("class-conditional ε*")
  out = analyze(s, ds, sims, primary, cond, uncond, theory, classes, predict,
                jax.random.fold_in(key, 1))
  # A few samples for the figure (the first noises, main scale).
  wi = list(s.guidance_scales).index(s.main_scale)
  k = int(s.grid_noises)
  grid = {}
  for lab, (g, x) in cond.items():
    for i in np.flatnonzero(g.sizes == sizes[-1]):
      grid[f"cond|{lab}|s{int(g.seeds[i])}"] = x[i, wi, :, :k]
  for lab, (g, x) in uncond.items():
    for i in np.flatnonzero(g.sizes == sizes[-1]):
      grid[f"uncond|{lab}|s{int(g.seeds[i])}"] = x[i, :k]
  grid["theory"] = theory[sizes[-1]][:, :k]
  io.save_npz(ctx.workdir / "grid.npz", **{f"a{i}": v for i, v in enumerate(grid.values())},
              names=np.array(list(grid)))
  io.save_npz(ctx.workdir / "between_classes.npz",
              **{f"N{n}": v for n, v in out.pop("_class_matrix").items()})
  progress.step("scored")
  out.update(threshold=float(sims[primary].threshold), similarity=primary,
             threshold_ncc=float(cal.threshold),
             calibration_accuracy=float((cal_learned or cal).accuracy),
             classifier_accuracy=clf_acc, sigma_range=[lo, hi],
             classes={str(n): classes[n].tolist() for n in sizes},
             groups=groups_info, train_seconds=t_train, seconds=time.time() - t0)
  return out


def analyze(s: Settings, ds, sims, primary, cond, uncond, theory, classes, predict, key) -> dict:
  """Every score with its interval (see the module docstring)."""
  sim = sims[primary]
  t = float(sim.threshold)
  band = np.linspace(max(t - s.band_halfwidth, -1.0), min(t + s.band_halfwidth, 1.0),
                     int(s.band_points))
  band = np.unique(np.concatenate([band, [t]]))
  wi = list(s.guidance_scales).index(s.main_scale)
  labels = [m[0] for m in s.members]
  out = {"band": band.tolist(), "per_N": {}, "_class_matrix": {}}
  feats = {lab: features(sim, x) for lab, (_, x) in cond.items()}          # [M, W, C, B, F]
  ufeats = {lab: features(sim, x) for lab, (_, x) in uncond.items()}       # [M, B, F]
  feats_ncc = {lab: features(sims["cal"], x[:, wi]) for lab, (_, x) in cond.items()}
  for n in [int(v) for v in s.sizes]:
    kn = jax.random.fold_in(key, n)
    present = classes[n]
    entries = [(lab, i) for lab, (g, _) in cond.items() for i in np.flatnonzero(g.sizes == n)]
    members_here = sorted({labels.index(lab) for lab, _ in entries})
    mem_labels = [labels[e] for e in members_here]
    member_of = np.array([members_here.index(labels.index(lab)) for lab, _ in entries])
    f = np.stack([feats[lab][i][:, present] for lab, i in entries])         # [K, W, C', B, F]
    sim_kk = np.einsum("iwcbf,jwcbf->wcijb", f, f)                          # [W, C', K, K, B]
    row = {"members": mem_labels, "classes": present.tolist(),
           "models": [f"{lab}/s{int(cond[lab][0].seeds[i])}" for lab, i in entries]}
    # RP_cond at the main scale: over classes and per class; over the band.
    main = sim_kk[wi]                                                       # [C', K, K, B]
    cells = pair_cells((main > t).mean(0), member_of, jax.random.fold_in(kn, 0), s,
                       len(members_here))
    per_class = pair_cells(main > t, member_of, jax.random.fold_in(kn, 0), s,
                           len(members_here))
    band_cells = pair_cells((main[None] > band[:, None, None, None, None]).mean(1),
                            member_of, jax.random.fold_in(kn, 0), s, len(members_here))
    fn = np.stack([feats_ncc[lab][i][present] for lab, i in entries])       # [K, C', B, F]
    ncc = np.einsum("icbf,jcbf->cijb", fn, fn) > float(sims["cal"].threshold)
    ncc_cells = pair_cells(ncc.mean(0), member_of, jax.random.fold_in(kn, 0), s,
                           len(members_here))
    row["rp_cond"] = _tolist({k: cells[k] for k in ("value", "lo", "hi")})
    row["rp_cond_all"] = _tolist(cells["all"])
    row["rp_cond_worst"] = _worst_cell(cells, mem_labels)
    row["rp_cond_per_class"] = _tolist({k: per_class[k] for k in ("value", "lo", "hi")})
    row["rp_cond_per_class_all"] = _tolist(per_class["all"])
    row["rp_cond_band_all"] = _tolist(band_cells["all"])
    row["rp_cond_band_worst"] = np.round(np.nanmin(band_cells["value"], axis=(1, 2)),
                                         4).tolist()
    row["rp_cond_ncc"] = _tolist({k: ncc_cells[k] for k in ("value", "lo", "hi")})
    row["rp_cond_ncc_all"] = _tolist(ncc_cells["all"])
    # Guidance sweep.
    sweep = pair_cells((sim_kk > t).mean(1), member_of, jax.random.fold_in(kn, 1), s,
                       len(members_here))                                   # [W, E, E]
    row["guidance"] = {str(w): dict(all=_tolist({k: sweep["all"][k][i] for k in
                                                 ("value", "lo", "hi")}),
                                    cells=_tolist({k: sweep[k][i] for k in
                                                   ("value", "lo", "hi")}),
                                    worst=_worst_cell({k: sweep[k][i] for k in
                                                       ("value", "lo", "hi")}, mem_labels))
                       for i, w in enumerate(s.guidance_scales)}
    # RP to the class-conditional ε* (main scale).
    th = features(sim, theory[n])                                           # [C', B, F]
    rp_th = np.einsum("kcbf,cbf->kcb", f[:, wi], th) > t                    # [K, C', B]
    row["rp_theory"] = {}
    for e, lab in enumerate(mem_labels):
      sel = member_of == e
      est = bootstrap.model_estimate(rp_th.mean(1)[sel], jax.random.fold_in(kn, 2 + e),
                                     strata=np.zeros(int(sel.sum())),
                                     num_resamples=int(s.bootstrap_resamples),
                                     level=float(s.ci_level))
      row["rp_theory"][lab] = _est(est)
    # RP_between, with unconditional models of the same N; their own RP for reference.
    row["between"], row["unconditional_classes"], row["rp_uncond"] = {}, {}, {}
    if n in [int(v) for v in s.uncond_sizes]:
      ulabels = list(uncond)
      u_of = np.concatenate([np.full(int(np.sum(g.sizes == n)), q)
                             for q, (g, _) in enumerate(uncond.values())])
      fu = np.concatenate([ufeats[lab][g.sizes == n] for lab, (g, _) in uncond.items()])
      ucells = pair_cells(np.einsum("ibf,jbf->ijb", fu, fu) > t, u_of,
                          jax.random.fold_in(kn, 4), s, len(ulabels))
      row["rp_uncond"] = dict(members=ulabels,
                              **_tolist({k: ucells[k] for k in ("value", "lo", "hi")}),
                              all=_tolist(ucells["all"]))
      row["between"], out["_class_matrix"][n], row["unconditional_classes"] = _between(
          s, uncond, ufeats, f[:, wi], entries, member_of, mem_labels, present, n, t, band,
          predict, jax.random.fold_in(kn, 3))
    out["per_N"][str(n)] = row
  return out


def _between(s, uncond, ufeats, fc, entries, member_of, mem_labels, present, n, t, band,
             predict, key):
  """RP_between and its class-matched / unmatched split for every (unconditional,
  conditional) pair of members at N = n; the class matrix `[C, C]` (class of the
  unconditional sample × conditioning class) of the mean hit rate."""
  c_all = int(s.num_classes)
  res, counts = {}, {}
  mat_num, mat_den = np.zeros((c_all, c_all)), np.zeros((c_all, 1))
  for ui, (ulab, (g, x)) in enumerate(uncond.items()):
    idx = np.flatnonzero(g.sizes == n)
    fu = ufeats[ulab][idx]                                                  # [I, B, F]
    k_u = np.stack([predict(x[i]) for i in idx])                            # [I, B]
    counts[ulab] = np.bincount(k_u.ravel(), minlength=c_all).tolist()
    for e, vlab in enumerate(mem_labels):
      fv = fc[member_of == e]                                               # [J, C', B, F]
      s_uv = np.einsum("ibf,jcbf->ijcb", fu, fv)                            # [I, J, C', B]
      hits_max = s_uv.max(2)                                                # [I, J, B]
      match = k_u[:, None, None, :] == present[None, None, :, None]         # [I, 1, C', B]
      hit = s_uv > t
      matched = np.sum(hit * match, axis=2)          # 0 where the class is absent
      other = np.maximum(len(present) - match.sum(2), 1)
      unmatched = np.sum(hit * ~match, axis=2) / other
      kk = jax.random.fold_in(key, 10 * ui + e)
      kw = dict(strata=np.zeros(len(idx)), col_strata=np.zeros(fv.shape[0]),
                num_resamples=int(s.bootstrap_resamples), level=float(s.ci_level))
      band_rp = [float(np.mean(hits_max > b)) for b in band]
      band_m = [float(np.mean(np.sum((s_uv > b) * match, 2))) for b in band]
      band_u = [float(np.mean(np.sum((s_uv > b) * ~match, 2) / other)) for b in band]
      res[f"{ulab} vs {vlab}"] = dict(
          rp_between=_est(bootstrap.pair_estimate(hits_max > t, kk, **kw)),
          matched=_est(bootstrap.pair_estimate(matched.astype(np.float32), kk, **kw)),
          unmatched=_est(bootstrap.pair_estimate(unmatched.astype(np.float32), kk, **kw)),
          band_rp_between=band_rp, band_matched=band_m, band_unmatched=band_u,
          absent_class_fraction=float(np.mean(~np.isin(k_u, present))))
      for ci, c in enumerate(present):
        for ku in range(c_all):
          sel = k_u == ku                                                  # [I, B]
          mat_num[ku, c] += np.sum(hit[:, :, ci, :] * sel[:, None, :])
      for ku in range(c_all):
        mat_den[ku] += np.sum(k_u == ku) * fv.shape[0]
  mat = np.where(mat_den > 0, mat_num / np.maximum(mat_den, 1), np.nan)
  mat[:, ~np.isin(np.arange(c_all), present)] = np.nan     # classes the subset lacks
  return res, mat, counts


# Verdicts -------------------------------------------------------------------------

_SOURCE = "reproducibility paper §4.1, Fig. 7, App. C; docs/theory.md §5.4"


def summarize(s: Settings, metrics: dict) -> dict:
  """The numbers the verdicts read."""
  pn = metrics["per_N"]
  n0, n1 = str(s.sizes[0]), str(s.sizes[-1])
  gen = pn[n1]
  between = gen["between"]
  pooled = {k: [v[k]["value"] for v in between.values()] for k in ("matched", "unmatched")}
  out = dict(
      rp_cond_worst={n: pn[n]["rp_cond_worst"] for n in pn},
      rp_cond_all={n: [pn[n]["rp_cond_all"]["value"],
                       [pn[n]["rp_cond_all"]["lo"], pn[n]["rp_cond_all"]["hi"]]] for n in pn},
      between_worst=min(((k, v["rp_between"]) for k, v in between.items()),
                        key=lambda kv: kv[1]["value"]),
      matched_min=min(pooled["matched"]), unmatched_max=max(pooled["unmatched"]),
      matched_lo_min=min(v["matched"]["ci"][0] for v in between.values()),
      unmatched_hi_max=max(v["unmatched"]["ci"][1] for v in between.values()),
      guidance={w: (g["worst"], g["all"]) for w, g in gen["guidance"].items()},
      theory={lab: {n: pn[n]["rp_theory"][lab] for n in pn if lab in pn[n]["rp_theory"]}
              for lab in [m[0] for m in s.members]})
  out["theory_both"] = [lab for lab, v in out["theory"].items() if n0 in v and n1 in v]
  return out


def verdicts(s: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  sm = summarize(s, metrics)
  pn = metrics["per_N"]
  out = []
  worst = sm["rp_cond_worst"]
  out.append(verdicts_lib.judge(
      all(w["rp"] >= s.min_rp_cond for w in worst.values()),
      partly=all(v[0] >= s.min_rp_cond for v in sm["rp_cond_all"].values()),
      claim="Different conditional diffusion models (seeds and architectures) generate the "
            "same image from the same noise and class (RP_cond high).",
      criterion=f"RP_cond (w = {s.main_scale:g}, over the classes) of every pair of members "
                f"(the diagonal: between seeds) ≥ {s.min_rp_cond:g} at every N trained (the "
                f"paper's level for reproducible pairs); partly: the mean over all pairs of "
                f"models reaches it",
      measured={f"N={n} worst pair": [w["pair"], round(w["rp"], 3),
                                       [round(c, 3) for c in w["ci"]]]
                for n, w in worst.items()} | {
                    f"N={n} all pairs": [round(v[0], 3), [round(c, 3) for c in v[1]]]
                    for n, v in sm["rp_cond_all"].items()},
      source=_SOURCE))
  key, bw = sm["between_worst"]
  out.append(verdicts_lib.judge(
      bw["value"] >= s.min_rp_between,
      claim="Conditional and unconditional models reproduce each other: the unconditional "
            "sample is one of the conditional samples from the same noise (RP_between "
            "high).",
      criterion=f"RP_between = P(max_c sim(x_u, x_v^c) > τ) ≥ {s.min_rp_between:g} for every "
                f"(unconditional, conditional) pair of members at N = {s.sizes[-1]}",
      measured={"worst pair": key, "RP_between": round(bw["value"], 3),
                "CI": [round(c, 3) for c in bw["ci"]],
                "all pairs": {k: round(v["rp_between"]["value"], 3)
                              for k, v in pn[str(s.sizes[-1])]["between"].items()}},
      source=_SOURCE))
  sep = sm["matched_lo_min"] > sm["unmatched_hi_max"]
  out.append(verdicts_lib.judge(
      sm["matched_min"] >= s.min_rp_matched and sm["unmatched_hi_max"] <= s.max_rp_unmatched,
      partly=sep,
      claim="Reproducibility between conditional and unconditional models holds only when "
            "the conditioning class is the class the unconditional sample shows.",
      criterion=f"for every (unconditional, conditional) pair at N = {s.sizes[-1]}: RP of the "
                f"matching class ≥ {s.min_rp_matched:g} and the CI upper bound of the other "
                f"classes' RP ≤ {s.max_rp_unmatched:g} (partly: every matched CI lies above "
                f"every unmatched one)",
      measured={"matched (min over pairs)": round(sm["matched_min"], 3),
                "matched CI lower (min)": round(sm["matched_lo_min"], 3),
                "unmatched (max)": round(sm["unmatched_max"], 3),
                "unmatched CI upper (max)": round(sm["unmatched_hi_max"], 3),
                "class reader": s.class_reader,
                "its training accuracy": (None if metrics["classifier_accuracy"] is None
                                          else round(metrics["classifier_accuracy"], 3))},
      source=_SOURCE))
  g = sm["guidance"]
  out.append(verdicts_lib.judge(
      all(v[0]["rp"] >= s.min_rp_cond for v in g.values()),
      partly=all(v[1]["value"] >= s.min_rp_cond for v in g.values()),
      claim="RP_cond survives classifier-free guidance (a question the paper leaves open: its "
            "conditional models are compared without a guidance sweep).",
      criterion=f"at every w in {tuple(s.guidance_scales)}, RP_cond of every pair of members ≥ "
                f"{s.min_rp_cond:g} at N = {s.sizes[-1]} (partly: the mean over all pairs)",
      measured={f"w={w}": {"worst": [v[0]["pair"], round(v[0]["rp"], 3)],
                           "all pairs": [round(v[1]["value"], 3),
                                         [round(v[1]["lo"], 3), round(v[1]["hi"], 3)]]}
                for w, v in g.items()},
      source="question beyond reproducibility paper §4.1; guidance: Ho & Salimans 2022, "
             "docs/theory.md §6.3"))
  n0, n1 = str(s.sizes[0]), str(s.sizes[-1])
  th = sm["theory"]
  both = sm["theory_both"]
  ok = bool(both) and all(
      th[lab][n0]["value"] >= s.min_rp_theory
      and th[lab][n1]["value"] <= th[lab][n0]["value"] - s.min_rp_theory_drop for lab in both)
  measured = {f"{lab}, N={n}": [round(v["value"], 3), [round(c, 3) for c in v["ci"]]]
              for lab, per in th.items() for n, v in per.items()}
  if not both:
    out.append(verdicts_lib.Verdict(
        claim="Memorizing conditional models reproduce the class-conditional ε*; "
              "generalizing ones do not (Fig. 6, per class).",
        verdict="not tested", criterion="needs a member trained at both N",
        measured=measured, source="reproducibility paper Theorem 1, Fig. 6; docs/theory.md "
                                  "§6.3"))
  else:
    out.append(verdicts_lib.judge(
        ok, partly=all(th[lab][n1]["value"] < th[lab][n0]["value"] for lab in both),
        claim="Memorizing conditional models reproduce the class-conditional ε* (the "
              "empirical denoiser of each class's images); generalizing ones do not (Fig. 6, "
              "per class).",
        criterion=f"for every member trained at both N: RP to the class ε* ≥ "
                  f"{s.min_rp_theory:g} at N = {n0} and at least {s.min_rp_theory_drop:g} "
                  f"lower at N = {n1} (partly: lower at N = {n1})",
        measured=measured,
        source="reproducibility paper Theorem 1, Fig. 6; docs/theory.md §6.3"))
  return out


def render(s: Settings, metrics: dict, workdir) -> None:
  """samples.png, rp_cond_classes.png, between.png, guidance.png, threshold_band.png,
  rp_theory.png and report.md."""
  report.render(s, metrics, workdir, summarize(s, metrics))
