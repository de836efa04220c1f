"""The negative control: GANs and VAEs do not reproduce (reproducibility paper §2.2.3, Fig. 5).

Claim: fed the same latent noise, GANs (WGAN-GP, SNGAN) and VAEs trained with
different seeds generate different images — no model reproducibility — in
contrast to diffusion models, whose seeds (and, less so, architectures)
reproduce each other from the same noise.

Set-up.  Four variants (`networks.generative`): a WGAN-GP, a hinge GAN with a
spectrally normalized discriminator (SNGAN) and two Gaussian VAEs (KL weight
β = 1 and a weaker one), each trained with every seed of `gen_seeds` (one
vmapped program per variant, restored from `zoo.dir` on a rerun) on the
diffusion zoo's training images at the generalization N (the same images).
Their latent has the data's dimension `L = H·W·C`, so that the very same
standard normal noises `z [B, H, W, C]` (the zoo studies' fixed noises) are
the GANs'/VAEs' latents (`z.reshape(B, L)`) and the diffusion models' starting
points (`σ_max · z`, Heun on the EDM ρ-grid, x0 clipped, VE convention
`x = x0 + σ ε`).  Diffusion models: the zoo's `diffusion_members` at
N = `diffusion_sizes[-1]`, restored.

Scores: RP between every two (variant or member) entries — the mean over
pairs of models of different seeds of the fraction of noises whose two images
the learned descriptor (`analysis.descriptor`, the zoo studies' descriptor and
calibrated threshold) calls copies; the diagonal is between seeds — with
bootstrap intervals over noises and seeds (`reproducibility_across_models.
matrix_scores`), and the diagonal again at every threshold of a band.  That
the control's RP is low because its samples are digits of their own and not
because they are broken: Fréchet distance of each entry's samples to the
training images in the descriptor's feature space, the distance to the
nearest training image, and the duplicate rate (how often one model's samples
from different noises are copies of each other: mode collapse).

`measure` writes samples.npz (a few samples per model, same latents) and
matrix.npz; `render` draws matrices.png, samples.png, band.png, quality.png
and report.md.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np

from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax.analysis import bootstrap
from repro_jax.analysis import metrics as metrics_lib
from repro_jax.analysis import reproducibility as rpr
from repro_jax.diffusion import schedules
from repro_jax.networks import model_zoo
from repro_jax.networks import training
from repro_jax.networks.generative import train as gen_train
from repro_jax.studies import _gan_vae_report
from repro_jax.studies import _gan_vae_scores as scores
from repro_jax.studies import _zoo_study
from repro_jax.studies import reproducibility_across_models as across
from repro_jax.studies import verdicts as verdicts_lib

VARIANTS = ("cpu", "smoke", "paper")
GEN_FIELDS = ("wgan_gp", "sngan", "vae", "vae_weak")
GEN_LABELS = {"wgan_gp": "WGAN-GP", "sngan": "SNGAN", "vae": "VAE β=1", "vae_weak": "VAE β=0.25"}
SOURCE = "reproducibility paper §2.2.3, Fig. 5"

_GS = gen_train.GenerativeSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(_zoo_study.ZooStudySettings):
  """The variants, the diffusion members, the noises and the criteria."""
  wgan_gp: gen_train.GenerativeSettings = dataclasses.field(default_factory=lambda: _GS(
      kind="wgan_gp", steps=1500, n_critic=5, lr=2e-4, b1=0.5, b2=0.9))
  sngan: gen_train.GenerativeSettings = dataclasses.field(default_factory=lambda: _GS(
      kind="sngan", steps=3000, n_critic=2, lr=2e-4, b1=0.0, b2=0.9))   # Miyato et al.: β1 = 0
  vae: gen_train.GenerativeSettings = dataclasses.field(default_factory=lambda: _GS(
      kind="vae", steps=4000, width=256, lr=1e-3, b1=0.9, b2=0.999, beta=1.0))
  vae_weak: gen_train.GenerativeSettings = dataclasses.field(default_factory=lambda: _GS(
      kind="vae", steps=4000, width=256, lr=1e-3, b1=0.9, b2=0.999, beta=0.25))
  gen_seeds: tuple[int, ...] = (0, 1, 2)
  # (label, model, width, parameterization): the zoo's diffusion groups,
  # trained on `diffusion_sizes` × `gen_seeds`; compared at the last size.
  diffusion_members: tuple[tuple[str, str, int, str], ...] = (
      ("MLP EDM", "mlp", 128, "edm"), ("DiT EDM", "dit", 32, "edm"))
  diffusion_sizes: tuple[int, ...] = (16, 1797)
  steps: int = 18                    # Heun on the EDM ρ-grid
  num_noises: int = 512
  threshold_band: tuple[float, float] = (0.5, 0.98)
  band_points: int = 13
  num_shown: int = 8                 # latents shown in samples.png
  # Criteria (declared before measuring).
  max_rp_control: float = 0.1        # every GAN/VAE cell: CI upper bound at most this
  min_rp_diffusion: float = 0.6      # paper App. A: pairs of diffusion models above 0.6
  max_fd_ratio: float = 3.0          # control FD ≤ ratio × the worst diffusion member's FD
  max_duplicate_rate: float = 0.05   # a model's samples from different noises: copies

  def __post_init__(self):
    if len(self.gen_seeds) < 2:
      raise ValueError("gen_seeds needs at least 2 seeds (the diagonal is RP between seeds).")
    if not self.diffusion_members or not self.diffusion_sizes:
      raise ValueError("diffusion_members and diffusion_sizes must not be empty.")
    for m in self.diffusion_members:
      if len(m) != 4 or m[2] < 1:
        raise ValueError(f"a diffusion member is (label, model, width >= 1, "
                         f"parameterization); got {m}.")
    lo, hi = self.threshold_band
    if not -1.0 <= lo < hi <= 1.0 or self.band_points < 2:
      raise ValueError("threshold_band must be (lo, hi) with -1 <= lo < hi <= 1 and "
                       "band_points >= 2.")
    if not self.learned:
      raise ValueError("the control is scored with the learned descriptor: learned=True.")
    if self.num_shown < 1 or self.num_shown > self.num_noises:
      raise ValueError("num_shown must lie in [1, num_noises].")
    if not 0 < self.ci_level < 1 or self.bootstrap_resamples < 10:
      raise ValueError("ci_level must lie in (0, 1) and bootstrap_resamples be >= 10.")


_SMOKE_GEN = dict(steps=20, chunk=10, width=16, batch=16)
_VARIANT_CHANGES = {
    "cpu": {},
    "smoke": dict(wgan_gp=dict(_SMOKE_GEN, n_critic=2), sngan=_SMOKE_GEN, vae=_SMOKE_GEN,
                  vae_weak=_SMOKE_GEN, gen_seeds=(0, 1),
                  diffusion_members=(("MLP EDM", "mlp", 16, "edm"),), diffusion_sizes=(8, 32),
                  steps=4, num_shown=4, bootstrap_resamples=50),
    # CIFAR-10: DCGAN-size GANs (latent 3072 = 32·32·3, so the diffusion noise is
    # their latent), wide MLP VAEs; the cross-model matrix's U-Net and DiT.
    "paper": dict(
        wgan_gp=dict(arch="dcgan", latent=3072, width=64, steps=100_000, lr=1e-4, chunk=1000),
        sngan=dict(arch="dcgan", latent=3072, width=64, steps=100_000, n_critic=5, chunk=1000),
        vae=dict(latent=3072, width=1024, steps=100_000, obs_std=0.1, chunk=1000),
        vae_weak=dict(latent=3072, width=1024, steps=100_000, obs_std=0.1, chunk=1000),
        diffusion_members=(("U-Net VP-eps", "unet", 128, "eps"), ("DiT VP-eps", "dit", 256, "eps")),
        diffusion_sizes=(64, 32768), num_noises=10_000),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default: digits), `smoke` (seconds, tests) or `paper` (CIFAR-10)."""
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  changes = _zoo_study.shared_changes(variant)
  zoo = changes.pop("zoo")
  if variant == "smoke":
    changes["num_noises"] = 16
  return settings_lib.override(Settings(zoo=zoo), dict(changes, **_VARIANT_CHANGES[variant]))


def variants(s: Settings) -> list[tuple[str, gen_train.GenerativeSettings]]:
  """`[(label, settings)]` of the GAN/VAE variants, in matrix order."""
  return [(GEN_LABELS[f], getattr(s, f)) for f in GEN_FIELDS]


def member_config(s: Settings, member) -> training.TrainSettings:
  """A diffusion member's training settings (the zoo's recipe, as the cross-model matrix)."""
  zoo = settings_lib.override(s.zoo, dict(model=member[1], sizes=tuple(s.diffusion_sizes)),
                              where="zoo")
  return model_zoo.train_config(zoo, member[2], overrides={
      "diffusion": dict(parameterization=member[3], schedule="vp")})


def training_jobs(s: Settings) -> list[tuple[str, object, int]]:
  """`(what, settings, number of models)` of every group the study trains."""
  jobs = [(f"{lab}: ×{len(s.gen_seeds)} seeds", g, len(s.gen_seeds)) for lab, g in variants(s)]
  jobs += [(f"{m[0]}: ×{len(s.diffusion_sizes)} sizes ×{len(s.gen_seeds)} seeds",
            member_config(s, m), len(s.diffusion_sizes) * len(s.gen_seeds))
           for m in s.diffusion_members]
  return jobs


def sigma_range(s: Settings) -> tuple[float, float]:
  """The σ range every diffusion member was trained on."""
  lo, hi = float(s.sigma_min), float(s.sigma_max)
  for m in s.diffusion_members:
    if m[3] != "edm":
      sched = schedules.get_schedule("vp")
      lo, hi = max(lo, float(sched.sigma_min)), min(hi, float(sched.sigma_max))
  return lo, hi


def check(s: Settings, n_total: int, data_shape) -> None:
  """Refuse settings the data cannot hold, before any work."""
  dim = int(np.prod(data_shape))
  for lab, g in variants(s):
    if g.latent != dim:
      raise ValueError(f"{lab}: latent must equal the data's dimension {dim} (the same noise "
                       f"feeds the diffusion models); got {g.latent}.")
  if max(s.diffusion_sizes) > n_total:
    raise ValueError(f"diffusion_sizes must be <= {n_total} (the data's rows); got "
                     f"{max(s.diffusion_sizes)}.")


def measure(s: Settings, ctx) -> dict:
  """Train or restore every variant and member, sample from the same noises, score."""
  t0 = time.time()
  progress = ctx.progress(2 + len(GEN_FIELDS) + len(s.diffusion_members) + 2)
  key = jax.random.key(int(s.seed))
  ds, sims, _, noise, subsets, cal = _zoo_study.setup(s, ctx.workdir, jax.random.fold_in(key, 0))
  check(s, len(ds), ds.data_shape)
  sim = sims["learned"]
  progress.step("descriptor and calibration")
  n_gen = int(s.diffusion_sizes[-1])
  subsets = model_zoo.nested_subsets(len(ds), s.diffusion_sizes, s.zoo.subset_seed)
  train_x = np.asarray(ds.x)[subsets[n_gen]]
  latent = noise.reshape(len(noise), -1)
  entries, samples, groups = [], [], {}
  for field, (lab, g) in zip(GEN_FIELDS, variants(s)):
    grp = gen_train.ensure_group(g, train_x, s.gen_seeds, s.zoo.dir, f"gen_{field}{g.width}")
    groups[lab] = dict(workdir=grp.workdir, **grp.info)
    entries.append(lab)
    samples.append(np.concatenate([grp.generate(latent[i:i + int(s.chunk)])
                                   for i in range(0, len(latent), int(s.chunk))], axis=1))
    progress.step(f"{lab}: trained or restored, generated")
  lo, hi = sigma_range(s)
  sigmas = rpr.sigma_grid(int(s.steps), lo, hi)
  for m in s.diffusion_members:
    grp = model_zoo.ensure_group(member_config(s, m), s.zoo.dir, f"{m[1]}{m[2]}_{m[3]}",
                                 sizes=s.diffusion_sizes, seeds=s.gen_seeds, subsets=subsets,
                                 data_shape=ds.data_shape)
    idx = np.flatnonzero(grp.sizes == n_gen)
    den = training.stacked_denoiser(grp.trainer, grp.params[idx])
    groups[m[0]] = dict(workdir=grp.workdir, **grp.info)
    entries.append(m[0])
    samples.append(_zoo_study.sample(rpr.clipped(den), noise, sigmas, sampler="heun",
                                     chunk=int(s.chunk)))
    progress.step(f"{m[0]}: restored or trained, sampled")
  stack = np.concatenate(samples)                                   # [K, B, H, W, C]
  entry_of = np.repeat(np.arange(len(entries)), [len(x) for x in samples])
  model_of = np.arange(len(stack))
  mat = across.matrix_scores(stack, entry_of, model_of, entry_of, sim, s,
                             jax.random.fold_in(key, 1))
  feats = np.asarray(jax.vmap(sim.features)(jax.numpy.asarray(stack)))   # [K, B, F]
  band = _band(feats, entry_of, s)
  seeds = np.concatenate([np.asarray(s.gen_seeds)] * len(entries))
  pairs = _seed_pairs(feats, entry_of, seeds, sim.threshold, len(GEN_FIELDS))
  progress.step("RP matrix and threshold band")
  quality = _quality(stack, feats, entry_of, train_x, sim, s, jax.random.fold_in(key, 2))
  progress.step("sample quality")
  io.save_npz(ctx.workdir / "samples.npz", samples=stack[:, : int(s.num_shown)],
              entry_of=entry_of)
  io.save_npz(ctx.workdir / "matrix.npz", **mat)
  num_gen = len(GEN_FIELDS)
  return dict(entries=entries, num_generative=num_gen, threshold=float(cal.threshold),
              calibration_accuracy=float(cal.accuracy), n_train=n_gen,
              num_noises=int(len(noise)), sigma_range=[lo, hi],
              matrix={k: np.round(v, 4).tolist() for k, v in mat.items()},
              band=band, quality=quality, groups=groups, seed_pairs=pairs,
              summary=summarize(mat, quality, num_gen, entries),
              seconds=time.time() - t0)


def _band(feats, entry_of, s: Settings) -> dict:
  """RP between seeds of each entry (and the largest across two GAN/VAE
  entries) at every threshold of the band (point values)."""
  sims = np.einsum("kbf,lbf->klb", feats, feats)
  ths = np.linspace(*s.threshold_band, int(s.band_points))
  k = len(entry_of)
  other = ~np.eye(k, dtype=bool)
  out = {"thresholds": ths.tolist(), "diagonal": [], "control_max": []}
  ng = len(GEN_FIELDS)
  for t in ths:
    rp = (sims > t).mean(-1)
    diag = [float(rp[np.ix_(entry_of == e, entry_of == e)][other[np.ix_(entry_of == e,
                                                                       entry_of == e)]].mean())
            for e in range(int(entry_of.max()) + 1)]
    cross = [float(rp[np.ix_(entry_of == e, entry_of == f)].mean())
             for e in range(ng) for f in range(ng) if e != f]
    out["diagonal"].append(diag)
    out["control_max"].append(max(cross + diag[:ng]))
  return out


def _seed_pairs(feats, entry_of, seeds, threshold: float, num_gen: int) -> dict:
  """RP between two GAN/VAE models of different variants, split by whether they
  share their seed (variants of one architecture then share their initial
  weights and batch order) — point values over every such pair."""
  rp = (np.einsum("kbf,lbf->klb", feats, feats) > threshold).mean(-1)
  ctrl = entry_of < num_gen
  cross = ctrl[:, None] & ctrl[None] & (entry_of[:, None] != entry_of[None])
  same = seeds[:, None] == seeds[None]
  return {"same_seed": float(rp[cross & same].mean()),
          "same_seed_max": float(rp[cross & same].max()),
          "other_seed": float(rp[cross & ~same].mean())}


def _quality(stack, feats, entry_of, train_x, sim, s: Settings, key) -> dict:
  """Per entry: FD in descriptor space, nearest-training distance (RMS per pixel)
  and duplicate rate, each with a bootstrap interval over seeds and noises."""
  train_f = np.asarray(sim.features(jax.numpy.asarray(train_x)))
  k, b = stack.shape[:2]
  dim = int(np.prod(stack.shape[2:]))
  flat = stack.reshape(k * b, *stack.shape[2:])
  nn = np.asarray(metrics_lib.nearest_train(flat, train_x).distance).reshape(k, b) / np.sqrt(dim)
  dup = scores.duplicate_rate(feats, sim.threshold)
  res = bootstrap.draw(key, b, entry_of, int(s.bootstrap_resamples))
  level = float(s.ci_level)
  fd = scores.fd_estimates(feats, train_f, entry_of, res, level)
  nn_e = scores.mean_estimates(nn, entry_of, res, level)
  dup_e = scores.mean_estimates(dup, entry_of, res, level)
  half = len(train_f) // 2
  perm = np.random.default_rng(int(s.seed)).permutation(len(train_f))
  return dict(fd=fd, nn=nn_e, duplicate=dup_e,
              fd_data_halves=scores.frechet_distance(train_f[perm[:half]],
                                                     train_f[perm[half:2 * half]], ddof=0))


def summarize(mat: dict, quality: dict, num_gen: int, entries) -> dict:
  """The numbers the verdicts read."""
  g = slice(0, num_gen)
  ctrl_hi = np.asarray(mat["rp_hi"])[g, g]
  i, j = np.unravel_index(np.argmax(ctrl_hi), ctrl_hi.shape)
  diag = [[float(mat[k][e, e]) for k in ("rp", "rp_lo", "rp_hi")] for e in range(len(entries))]
  return dict(control_worst=[entries[i], entries[j]],
              control_worst_rp=float(mat["rp"][i, j]),
              control_worst_ci=[float(mat["rp_lo"][i, j]), float(ctrl_hi[i, j])],
              diagonal=diag)


def _r(x):
  return round(float(x), 4)


def verdicts(s: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  ents, ng = metrics["entries"], metrics["num_generative"]
  summ, q = metrics["summary"], metrics["quality"]
  diag = summ["diagonal"]
  rows = []
  ctrl = {ents[e]: [_r(diag[e][0]), [_r(diag[e][1]), _r(diag[e][2])]] for e in range(ng)}
  band_max = max(metrics["band"]["control_max"])
  rows.append(verdicts_lib.judge(
      summ["control_worst_ci"][1] <= s.max_rp_control,
      claim="GANs and VAEs fed the same latent noise do not reproduce each other across "
            "seeds or variants (no model reproducibility)",
      criterion=f"every GAN/VAE cell of the RP matrix (between seeds, and between two "
                f"variants), learned descriptor at its calibrated threshold: {s.ci_level:.0%} "
                f"CI upper bound ≤ {s.max_rp_control:g}",
      measured={"RP between seeds [CI]": ctrl,
                "worst cell": f"{summ['control_worst'][0]} / {summ['control_worst'][1]}",
                "worst RP [CI]": [_r(summ["control_worst_rp"]),
                                  [_r(c) for c in summ["control_worst_ci"]]],
                "largest control RP over the threshold band": _r(band_max)},
      source=SOURCE))
  diff = {ents[e]: [_r(diag[e][0]), [_r(diag[e][1]), _r(diag[e][2])]]
          for e in range(ng, len(ents))}
  ctrl_top = max(diag[e][2] for e in range(ng))
  above = all(v[0] >= s.min_rp_diffusion for v in diff.values())
  separated = all(v[1][0] > ctrl_top for v in diff.values())
  rows.append(verdicts_lib.judge(
      above and separated, partly=separated,
      claim="In contrast, diffusion models trained with different seeds reproduce each "
            "other from the same noise",
      criterion=f"every diffusion member's RP between seeds ≥ {s.min_rp_diffusion:g} (paper "
                f"App. A) with its CI lower bound above every GAN/VAE between-seeds CI upper "
                f"bound (partly: only the separation)",
      measured={"RP between seeds [CI]": diff, "largest GAN/VAE CI upper bound":
                _r(ctrl_top)},
      source=SOURCE + "; App. A"))
  fd = {ents[e]: [_r(q["fd"][e]["value"]), [_r(c) for c in q["fd"][e]["ci"]]]
        for e in range(len(ents))}
  dup = {ents[e]: [_r(q["duplicate"][e]["value"]), [_r(c) for c in q["duplicate"][e]["ci"]]]
         for e in range(ng)}
  fd_ref = max(q["fd"][e]["value"] for e in range(ng, len(ents)))
  fd_ok = all(q["fd"][e]["ci"][1] <= s.max_fd_ratio * fd_ref for e in range(ng))
  dup_ok = all(q["duplicate"][e]["ci"][1] <= s.max_duplicate_rate for e in range(ng))
  rows.append(verdicts_lib.judge(
      fd_ok and dup_ok, partly=dup_ok,
      claim="The control's low RP is not an artefact of broken samples: the GANs and VAEs "
            "generate varied digits (no mode collapse)",
      criterion=f"per GAN/VAE variant: Fréchet distance to the training images in the "
                f"descriptor's feature space, CI upper bound ≤ {s.max_fd_ratio:g} × the worst "
                f"diffusion member's FD, and duplicate rate (samples of one model from "
                f"different noises called copies) CI upper bound ≤ {s.max_duplicate_rate:g} "
                f"(partly: no collapse, but worse FD)",
      measured={"FD [CI]": fd, "FD between two halves of the data":
                _r(q["fd_data_halves"]), "duplicate rate [CI]": dup},
      source=SOURCE + " (a guard of this study)"))
  return rows


def render(s: Settings, metrics: dict, workdir) -> None:
  _gan_vae_report.render(s, metrics, pathlib.Path(workdir))
