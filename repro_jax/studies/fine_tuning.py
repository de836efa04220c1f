"""Reproducibility of partially fine-tuned diffusion models (reproducibility paper §4.3, Fig. 9, App. E).

Claim (C4, fine-tuning): fine-tuning only the attention layers of a pretrained
model on N images of another data set gives models that reproduce the
from-scratch models of the same N less, and generalize more, in the
memorization regime (small N); in the generalization regime (large N) partial
fine-tuning changes little of either.

Protocol.  One network (`zoo.model` at width `zoo.widths[0]`, the zoo's
training settings) is pretrained on every image of `pretrain_classes`
(`pretrain_steps` steps, one model per `pretrain_seeds`).  The images of
`target_classes` are permuted once (`zoo.subset_seed`) and cut into nested
subsets, one per N of `zoo.sizes`.  For every N and seed of `zoo.seeds` the
same architecture is (a) trained from scratch on that subset and (b)
fine-tuned on it from the pretrained parameters, only the parameters the
`trainable` filter selects training (`training.finetune`: the attention
layers), with the same optimizer and number of steps; model `(N, seed)` of
both draws the same batches and training noises.  Every model, and the
pretrained one, samples from the same fixed noises (deterministic `sampler`
on the EDM ρ-grid, x0 clipped).

Scores per N, with the learned descriptor and the pixel NCC (thresholds
calibrated on the data set, as in the zoo studies): RP between fine-tuned and
from-scratch models (all pairs, same noise), among fine-tuned seeds, among
from-scratch seeds, and of each to the pretrained model; GL of both against
their N training images; and the fraction of samples that copy a pretraining
image.  Intervals: percentile bootstrap over the noises and the seeds (seeds
redrawn within their kind: fine-tuned, from scratch, pretrained).  Images are
`[H, W, C]` in [−1, 1]; noises standard normal `z [B, H, W, C]`, the samplers
start from `σ_max z` on canonical (VE) denoisers, `x_σ = x0 + σ ε`.

`measure` writes noises.npy (or keeps them under `zoo.dir`), samples.npz and
scores.csv; `render` draws rp_gl.png and samples.png and writes report.md.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax.analysis import bootstrap
from repro_jax.analysis import reproducibility as rpr
from repro_jax.diffusion import schedules
from repro_jax.networks import finetune_zoo
from repro_jax.networks import model_zoo
from repro_jax.networks.training import finetune
from repro_jax.studies import _fine_tuning_report
from repro_jax.studies import _zoo_study
from repro_jax.studies import verdicts as verdicts_lib

VARIANTS = ("cpu", "smoke", "paper")
KINDS = ("ft", "scratch", "pre")          # fine-tuned, from scratch, pretrained
SIMS = ("learned", "cal")                 # the learned descriptor, the pixel NCC


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(_zoo_study.ZooStudySettings):
  """The models (`zoo`: architecture, width `zoo.widths[0]`, the N of
  `zoo.sizes` and the seeds `zoo.seeds` of the from-scratch and fine-tuned
  grids, their training settings), the pretraining, the filter and the criteria."""
  pretrain_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
  target_classes: tuple[int, ...] = (5, 6, 7, 8, 9)
  pretrain_seeds: tuple[int, ...] = (0,)
  pretrain_steps: int = 4000
  trainable: str = "attention"            # a `training.finetune.FILTERS` name
  sampler: tuple[str, str, int] = ("Heun", "heun", 18)
  clip_x0: bool = True
  verdict_similarity: str = "learned"     # "learned" or "cal" (the pixel NCC)
  # Criteria (declared before measuring).  The regimes are premises: the
  # from-scratch GL at the smallest N at most `max_gl_memorization`, at the
  # largest N at least `min_gl_generalization`; otherwise "not tested".
  max_gl_memorization: float = 0.5
  min_gl_generalization: float = 0.5
  # Generalization regime, "changes little": |RP(ft, scratch) − RP(scratch,
  # scratch)| and |GL(ft) − GL(scratch)| at most these.
  gen_tol_rp: float = 0.1
  gen_tol_gl: float = 0.1
  examples: int = 8                       # noises shown in samples.png

  def __post_init__(self):
    pre, tgt = set(self.pretrain_classes), set(self.target_classes)
    if not pre or not tgt or pre & tgt:
      raise ValueError("pretrain_classes and target_classes must be non-empty and disjoint; "
                       f"got {self.pretrain_classes} and {self.target_classes}.")
    if len(self.zoo.seeds) < 2 or not self.pretrain_seeds:
      raise ValueError("zoo.seeds needs at least 2 seeds (RP among seeds) and "
                       "pretrain_seeds at least one.")
    if len(self.zoo.sizes) < 2 or list(self.zoo.sizes) != sorted(set(self.zoo.sizes)):
      raise ValueError("zoo.sizes must be at least 2 increasing N (memorization to "
                       f"generalization); got {self.zoo.sizes}.")
    if self.trainable not in finetune.FILTERS:
      raise ValueError(f"trainable must be one of {', '.join(finetune.FILTERS)}; got "
                       f"{self.trainable!r}.")
    if self.verdict_similarity not in SIMS or (self.verdict_similarity == "learned"
                                               and not self.learned):
      raise ValueError(f"verdict_similarity must be one of {SIMS} (\"learned\" needs "
                       "learned=True).")
    if self.pretrain_steps < 1 or self.sampler[2] < 1 or self.examples < 1:
      raise ValueError("pretrain_steps, the sampler's steps and examples must be >= 1.")
    if not 0 < self.ci_level < 1 or self.bootstrap_resamples < 10:
      raise ValueError("ci_level must lie in (0, 1) and bootstrap_resamples be >= 10.")


# A width-32 DiT as in the zoo; a shorter budget (batch 32, 1500 steps) with a
# shorter EMA (0.99: the EMA of 0.999 would still average over most of the run)
# and a larger learning rate (5e-3 instead of the zoo's 1e-3, for every group:
# at 1e-3 the from-scratch models do not yet memorize N = 4 images in 1500
# steps, GL about 0.5 and seeds disagreeing; at 5e-3 they do).
_CPU_ZOO = dict(model="dit", widths=(32,), sizes=(4, 16, 128, 896), seeds=(0, 1),
                train=dict(optim=dict(learning_rate=5e-3),
                           train=dict(batch_size=32, num_steps=1500, checkpoint_every=1500,
                                      ema_decay=0.99)))
_VARIANT_CHANGES = {
    "cpu": dict(zoo=_CPU_ZOO, num_noises=512, pretrain_steps=3000),
    "smoke": dict(zoo=dict(model="dit", widths=(8,), sizes=(4, 8, 16), seeds=(0, 1),
                           train=dict(model=dict(depth=1, emb_dim=8, num_heads=2))),
                  pretrain_steps=20, sampler=("Heun", "heun", 4), bootstrap_resamples=50,
                  examples=4),
    # The paper fine-tunes the attention of a CIFAR-100 U-Net on CIFAR-10 subsets;
    # with CIFAR-10 alone: pretrained on classes 0-4, fine-tuned on subsets of 5-9.
    "paper": dict(zoo=dict(widths=(128,), sizes=(64, 1024, 4096, 16384, 25000),
                           seeds=(0, 1, 2)),
                  pretrain_steps=200_000),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default: a width-32 DiT on the digits), `smoke` (seconds, tests) or
  `paper` (CIFAR-10 U-Nets, width 128)."""
  if variant not in _VARIANT_CHANGES:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  changes = _zoo_study.shared_changes("cpu" if variant == "cpu" else variant)
  zoo = changes.pop("zoo")
  extra = dict(_VARIANT_CHANGES[variant])
  zoo = settings_lib.override(zoo, extra.pop("zoo"), where="zoo")
  return settings_lib.override(Settings(zoo=zoo), dict(changes, **extra))


# Data and training -------------------------------------------------------------

def class_rows(labels, classes) -> np.ndarray:
  """`int32 [n]` the rows whose label is in `classes`, ascending."""
  return np.flatnonzero(np.isin(np.asarray(labels), np.asarray(classes))).astype(np.int32)


def target_subsets(labels, s: Settings) -> dict[int, np.ndarray]:
  """`{N: int32 [N]}` nested subsets of the target classes' rows (prefixes of
  one permutation drawn with `zoo.subset_seed`)."""
  rows = class_rows(labels, s.target_classes)
  if max(s.zoo.sizes) > len(rows):
    raise ValueError(f"zoo.sizes must be <= {len(rows)} (the images of classes "
                     f"{s.target_classes}); got {max(s.zoo.sizes)}.")
  perm = data_lib.subset_indices(int(s.zoo.subset_seed), len(rows), len(rows))
  return {int(n): rows[perm[:int(n)]] for n in s.zoo.sizes}


def check(s: Settings, ds) -> None:
  """Refuse a data set the study cannot split, before any training."""
  if ds.labels is None:
    raise ValueError("fine_tuning splits the data set by class: it needs labels.")
  if not len(class_rows(ds.labels, s.pretrain_classes)):
    raise ValueError(f"no image of pretrain_classes {s.pretrain_classes}.")
  target_subsets(ds.labels, s)


def train_config(s: Settings):
  """The training settings of the from-scratch and fine-tuned models."""
  return model_zoo.train_config(s.zoo, int(s.zoo.widths[0]))


def pretrain_config(s: Settings):
  return settings_lib.override(train_config(s), {"train": {"num_steps": int(s.pretrain_steps)}})


def training_jobs(s: Settings) -> list[tuple[str, object, int]]:
  """`(what, TrainSettings, number of models)` of every group the study trains
  (fine-tuning computes every gradient, then masks: a full step's cost)."""
  grid = f"×{len(s.zoo.sizes)} sizes ×{len(s.zoo.seeds)} seeds"
  num = len(s.zoo.sizes) * len(s.zoo.seeds)
  return [(f"pretraining on classes {_classes(s.pretrain_classes)}", pretrain_config(s),
           len(s.pretrain_seeds)),
          (f"from scratch on classes {_classes(s.target_classes)}: {grid}", train_config(s), num),
          (f"fine-tuning ({s.trainable}) on classes {_classes(s.target_classes)}: {grid}",
           train_config(s), num)]


def _classes(classes) -> str:
  return "".join(str(int(c)) for c in classes)


def _name(s: Settings, what: str) -> str:
  return f"{s.zoo.model}{int(s.zoo.widths[0])}_{what}"


def ensure_models(s: Settings, ds, subsets: dict, progress=None) -> dict:
  """`{"pre", "scratch", "ft"}`: the three groups, trained or restored."""
  rows = class_rows(ds.labels, s.pretrain_classes)
  pre = model_zoo.ensure_group(pretrain_config(s), s.zoo.dir,
                               _name(s, f"pre{_classes(s.pretrain_classes)}"),
                               sizes=(len(rows),), seeds=s.pretrain_seeds,
                               subsets={len(rows): rows}, data_shape=ds.data_shape)
  if progress is not None:
    progress.step("pretrained")
  cfg = train_config(s)
  scratch = model_zoo.ensure_group(cfg, s.zoo.dir,
                                   _name(s, f"scratch{_classes(s.target_classes)}"),
                                   sizes=s.zoo.sizes, seeds=s.zoo.seeds, subsets=subsets,
                                   data_shape=ds.data_shape)
  if progress is not None:
    progress.step("trained from scratch")
  # Model (N, seed k) starts from the pretrained model k mod len(pretrain_seeds).
  which = [k % len(s.pretrain_seeds) for _ in s.zoo.sizes for k in range(len(s.zoo.seeds))]
  base = np.asarray(pre.params)[which]
  ft = finetune_zoo.ensure_finetuned(
      cfg, s.zoo.dir, _name(s, f"ft_{s.trainable}{_classes(s.target_classes)}"), base=base,
      filt=s.trainable, sizes=s.zoo.sizes, seeds=s.zoo.seeds, subsets=subsets, dataset=ds)
  if progress is not None:
    progress.step("fine-tuned")
  return {"pre": pre, "scratch": scratch, "ft": ft}


def sigma_range(s: Settings) -> tuple[float, float]:
  """The σ range the models were trained on (EDM: any σ; VP/sub-VP: its schedule's)."""
  lo, hi = float(s.sigma_min), float(s.sigma_max)
  d = s.zoo.train.diffusion
  if d.parameterization != "edm":
    sched = schedules.get_schedule(d.schedule)
    lo, hi = max(lo, float(sched.sigma_min)), min(hi, float(sched.sigma_max))
  return lo, hi


def _sample(group, noise, s: Settings) -> np.ndarray:
  lo, hi = sigma_range(s)
  den = rpr.clipped(group.denoise) if s.clip_x0 else group.denoise
  out = _zoo_study.sample(den, noise, rpr.sigma_grid(int(s.sampler[2]), lo, hi),
                          sampler=s.sampler[1], chunk=int(s.chunk))
  return out if out.ndim == noise.ndim + 1 else out[None]


# Scores ------------------------------------------------------------------------------

def pair_cells(hits, kind_of, pairs, key, resamples: int, level: float) -> dict:
  """Mean per-noise hit rate over the pairs of two kinds of models, with intervals.

  Args:
    hits: `[K, K, B]` per-noise hits between K sample sets (one per model).
    kind_of: `[K]` the kind of each model (its seeds are exchangeable).
    pairs: `{label: (kind a, kind b)}`; pairs of one model are left out.
    key: PRNG key of the draws (models redrawn within their kind, noises jointly).

  Returns:
    `{label: bootstrap.Estimate}` (NaN where a cell has no pair).
  """
  kind_of = np.asarray(kind_of)
  res = bootstrap.draw(key, hits.shape[-1], kind_of, int(resamples))
  means = bootstrap.noise_means(hits, res)
  out = {}
  for label, (a, b) in pairs.items():
    mask = np.outer(kind_of == a, kind_of == b) & ~np.eye(len(kind_of), dtype=bool)
    if not mask.any():
      out[label] = bootstrap.Estimate(np.nan, np.nan, np.nan, 0.0)
      continue
    out[label] = bootstrap.estimate(bootstrap.point_pair(hits, mask),
                                    bootstrap.pair_mean(means, mask, res.models, res.models),
                                    level)
  return out


_PAIRS = {"rp_ft_scratch": ("ft", "scratch"), "rp_scratch": ("scratch", "scratch"),
          "rp_ft": ("ft", "ft"), "rp_ft_pre": ("ft", "pre"), "rp_scratch_pre": ("scratch", "pre")}


def scores_at(samples: dict, train, pre_train, sim, key, s: Settings) -> dict:
  """Every score of one N for one similarity.

  Args:
    samples: `{kind: [M_kind, B, ...]}` for `KINDS`, from the same noises.
    train: the N training images `[N, ...]` of the fine-tuned and scratch models.
    pre_train: the pretraining images `[N_pre, ...]`.
    sim: a `metrics.Similarity` with its threshold.

  Returns:
    `{score: Estimate}`: the `_PAIRS` RPs, `gl_ft`, `gl_scratch`, `copy_pre_ft`,
    `copy_pre_scratch` (fraction of samples above the threshold to a
    pretraining image).
  """
  stack = np.concatenate([samples[k] for k in KINDS])
  kind_of = np.concatenate([np.full(len(samples[k]), k) for k in KINDS])
  thr = np.float32(sim.threshold)
  hits = rpr.pair_values(stack, {"v": sim})["sim_v"] > thr
  k_rp, k_gl, k_pre = jax.random.split(key, 3)
  reps, level = int(s.bootstrap_resamples), float(s.ci_level)
  out = pair_cells(hits, kind_of, _PAIRS, k_rp, reps, level)
  for kind, k in (("ft", k_gl), ("scratch", k_gl)):
    x = samples[kind]
    ms = np.stack([rpr.max_similarities(xi, train, {"v": sim})["v"] for xi in x])
    out[f"gl_{kind}"] = bootstrap.gl_estimate(ms, thr, jax.random.fold_in(k, len(out)),
                                              num_resamples=reps, level=level)
    mp = np.stack([rpr.max_similarities(xi, pre_train, {"v": sim})["v"] for xi in x])
    out[f"copy_pre_{kind}"] = bootstrap.model_estimate(
        mp > thr, jax.random.fold_in(k_pre, len(out)), num_resamples=reps, level=level)
  return out


def _row(n: int, sim_label: str, est: dict) -> dict:
  row = {"N": n, "similarity": sim_label}
  for name, e in est.items():
    row[name], row[f"{name}_lo"], row[f"{name}_hi"] = (float(e.value), float(e.lo),
                                                       float(e.hi))
  return row


def measure(s: Settings, ctx) -> dict:
  """Pretrain, train from scratch, fine-tune (or restore), sample, score."""
  t0 = time.time()
  ds = data_lib.load_dataset(s.zoo.train.data)
  check(s, ds)
  subsets = target_subsets(ds.labels, s)
  progress = ctx.progress(5 + len(s.zoo.sizes))
  key = jax.random.key(int(s.seed))
  ds, sims, cal, noise, _, cal_learned = _zoo_study.setup(s, ctx.workdir,
                                                          jax.random.fold_in(key, 0))
  progress.step("calibration")
  groups = ensure_models(s, ds, subsets, progress)
  samples = {k: _sample(g, noise, s) for k, g in groups.items()}
  progress.step("sampled")
  pre_train = ds.x[class_rows(ds.labels, s.pretrain_classes)]
  rows = []
  for n in s.zoo.sizes:
    n = int(n)
    by_kind = {k: samples[k][groups[k].sizes == n] if k != "pre" else samples[k]
               for k in KINDS}
    for label in SIMS:
      if label in sims:
        est = scores_at(by_kind, ds.x[subsets[n]], pre_train, sims[label],
                        jax.random.fold_in(key, n), s)
        rows.append(_row(n, label, est))
    progress.step(f"scored N = {n}")
  io.save_csv(ctx.workdir / "scores.csv", rows)
  ex = int(s.examples)
  io.save_npz(ctx.workdir / "samples.npz", sizes=np.asarray(s.zoo.sizes),
              pre=samples["pre"][0, :ex],
              **{f"{k}_N{int(n)}": samples[k][np.flatnonzero(groups[k].sizes == int(n))[0], :ex]
                 for k in ("ft", "scratch") for n in s.zoo.sizes},
              **{f"train_N{int(n)}": ds.x[subsets[int(n)][:ex]] for n in s.zoo.sizes})
  progress.step("done")
  thresholds = {"cal": float(cal.threshold)}
  if cal_learned is not None:
    thresholds["learned"] = float(cal_learned.threshold)
  return dict(
      rows=rows, thresholds=thresholds, num_noises=int(len(noise)),
      sigma_range=list(sigma_range(s)),
      pretrain_images=int(len(pre_train)),
      trained_fraction=groups["ft"].info.get("trained_fraction"),
      trained_paths=groups["ft"].info.get("trained_paths"),
      groups={k: dict(workdir=g.workdir, **{f: g.info.get(f) for f in
                                            ("train_seconds", "num_steps", "steps_per_sec")})
              for k, g in groups.items()},
      train_seconds=sum(float(g.info.get("train_seconds") or 0.0) for g in groups.values()),
      seconds=time.time() - t0)


# Verdicts ---------------------------------------------------------------------------

_SOURCE = "reproducibility paper §4.3, Fig. 9, App. E"


def rows_of(metrics: dict, label: str) -> list[dict]:
  """The score rows of one similarity, in increasing N (NaN read back as floats)."""
  rows = [{k: float(v) if isinstance(v, str) and v in ("nan", "inf", "-inf") else v
           for k, v in r.items()} for r in metrics["rows"] if r["similarity"] == label]
  return sorted(rows, key=lambda r: r["N"])


def _ci(r, k):
  return [round(r[f"{k}_lo"], 4), round(r[f"{k}_hi"], 4)]



def _judged(premise_holds: bool, passed, **fields) -> verdicts_lib.Verdict:
  """"not tested" when the regime's premise fails, else judged by `passed()`."""
  if not premise_holds:
    return verdicts_lib.Verdict(verdict="not tested", source=_SOURCE, **fields)
  return verdicts_lib.judge(passed(), source=_SOURCE, **fields)

def verdicts(s: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  rows = rows_of(metrics, s.verdict_similarity)
  mem, gen = rows[0], rows[-1]
  sim_name = {"learned": "learned descriptor", "cal": "pixel NCC"}[s.verdict_similarity]
  out = []
  mem_ok = mem["gl_scratch"] <= s.max_gl_memorization
  premise_mem = (f"premise: the from-scratch models memorize at N = {mem['N']} (GL ≤ "
                 f"{s.max_gl_memorization:g}; else not tested)")
  m_rp = dict(N=mem["N"], similarity=sim_name,
              rp_ft_scratch=round(mem["rp_ft_scratch"], 4),
              rp_ft_scratch_ci=_ci(mem, "rp_ft_scratch"),
              rp_scratch=round(mem["rp_scratch"], 4), rp_scratch_ci=_ci(mem, "rp_scratch"),
              rp_ft=round(mem["rp_ft"], 4), rp_ft_ci=_ci(mem, "rp_ft"),
              gl_scratch=round(mem["gl_scratch"], 4))
  claim = ("In the memorization regime, partially fine-tuned models reproduce the "
           "from-scratch models less than from-scratch models reproduce each other.")
  crit = (f"at the smallest N: CI upper bound of RP(fine-tuned, from scratch) below the CI "
          f"lower bound of RP between from-scratch seeds; {premise_mem}")
  out.append(_judged(mem_ok, lambda: mem["rp_ft_scratch_hi"] < mem["rp_scratch_lo"],
                     claim=claim, criterion=crit, measured=m_rp))
  m_gl = dict(N=mem["N"], similarity=sim_name, gl_ft=round(mem["gl_ft"], 4),
              gl_ft_ci=_ci(mem, "gl_ft"), gl_scratch=round(mem["gl_scratch"], 4),
              gl_scratch_ci=_ci(mem, "gl_scratch"),
              copy_pretraining_ft=round(mem["copy_pre_ft"], 4))
  claim = "In the memorization regime, partial fine-tuning raises the generalization score."
  crit = (f"at the smallest N: CI lower bound of GL(fine-tuned) above the CI upper bound of "
          f"GL(from scratch); {premise_mem}")
  out.append(_judged(mem_ok, lambda: mem["gl_ft_lo"] > mem["gl_scratch_hi"],
                     claim=claim, criterion=crit, measured=m_gl))
  d_rp = abs(gen["rp_ft_scratch"] - gen["rp_scratch"])
  d_gl = abs(gen["gl_ft"] - gen["gl_scratch"])
  m_gen = dict(N=gen["N"], similarity=sim_name,
               rp_ft_scratch=round(gen["rp_ft_scratch"], 4),
               rp_ft_scratch_ci=_ci(gen, "rp_ft_scratch"),
               rp_scratch=round(gen["rp_scratch"], 4), rp_scratch_ci=_ci(gen, "rp_scratch"),
               gl_ft=round(gen["gl_ft"], 4), gl_ft_ci=_ci(gen, "gl_ft"),
               gl_scratch=round(gen["gl_scratch"], 4), gl_scratch_ci=_ci(gen, "gl_scratch"),
               rp_difference=round(d_rp, 4), gl_difference=round(d_gl, 4))
  claim = ("In the generalization regime, partial fine-tuning changes little of "
           "reproducibility and generalization.")
  crit = (f"at the largest N: RP(fine-tuned, from scratch) within {s.gen_tol_rp:g} of RP "
          f"between from-scratch seeds and GL(fine-tuned) within {s.gen_tol_gl:g} of "
          f"GL(from scratch) (absolute differences of the point values) "
          f"(partly: one of the two); premise: the from-scratch models generalize at "
          f"N = {gen['N']} (GL ≥ {s.min_gl_generalization:g}; else not tested)")
  if gen["gl_scratch"] < s.min_gl_generalization:
    out.append(verdicts_lib.Verdict(claim=claim, verdict="not tested", criterion=crit,
                                    measured=m_gen, source=_SOURCE))
  else:
    ok_rp, ok_gl = d_rp <= s.gen_tol_rp, d_gl <= s.gen_tol_gl
    out.append(verdicts_lib.judge(ok_rp and ok_gl, partly=ok_rp or ok_gl, claim=claim,
                                  criterion=crit, measured=m_gen, source=_SOURCE))
  return out


def render(s: Settings, metrics: dict, workdir) -> None:
  """rp_gl.png, samples.png and report.md."""
  _fine_tuning_report.render(s, metrics, workdir)
