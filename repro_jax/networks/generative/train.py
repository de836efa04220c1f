"""Every seed of one GAN or VAE variant, trained in one vmapped program, kept, restored.

A *group* is `M = len(seeds)` models of one variant (`GenerativeSettings`),
trained on the same images with different initializations and batch orders:
the train states are stacked along a leading axis `M`, one jitted call runs
`chunk` steps of every model (`jax.vmap` over the models of a `lax.scan` over
the steps), and the train states are saved with orbax
(`training.checkpoint`) in `<zoo_dir>/<name>-<hash>/`, the hash covering the
settings, the seeds and the images, so that a second run restores them
(`ensure_group`, as `model_zoo.ensure_group` does for denoisers).

Resumable as the diffusion trainer (`training.many`, `training.loop`): with a
`workdir`, the full train state of every model (generator, critic, its
spectral-norm statistics, both optimizer states) is saved every
`checkpoint_every` steps and at the end (`training.checkpoint`: never a NaN
or inf, checksummed, the last `KEEP` steps kept, a damaged latest step falls
back to the previous intact one), and a rerun resumes from the latest one.
Step `t` of a model uses the key `fold_in(key, t)` and the chunks are aligned
to multiples of `chunk`, so a resumed run gives the same parameters, bit for
bit, as an uninterrupted one.  A checkpoint holding only the generator (the
layout of earlier versions, written once training had finished) counts as
finished.  `checkpoint_every` (like `steps`) may change when resuming; it does
not enter the group's hash (`HASH_EXCLUDED`), which therefore matches the
groups kept before it existed.

Objectives (`kind`):
- `"wgan_gp"`: WGAN with gradient penalty (Gulrajani et al., 2017),
  `n_critic` critic steps per generator step;
- `"sngan"`: hinge GAN with a spectrally normalized discriminator (Miyato et
  al., 2018), `n_critic` discriminator steps per generator step;
- `"vae"`: the negative ELBO `recon + β KL` (`vae.elbo_terms`).

Shapes: images `x [N, H, W, C]` in `[−1, 1]`; latents `z [B, L]` standard
normal; `GenGroup.generate(z [B, L]) -> [M, B, H, W, C]` (every model from the
same latents).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax import lax

from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax import validation
from repro_jax.networks.generative import gan
from repro_jax.networks.generative import vae
from repro_jax.networks.training import checkpoint
from repro_jax.networks.training import loop

KINDS = ("wgan_gp", "sngan", "vae")
INFO_FILE = "gen_info.json"
KEEP = 3                  # checkpoints kept per group (the newest)
LAYOUT = "full_state"     # meta["layout"] of a checkpoint holding the full train state


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerativeSettings:
  """One variant: its objective, architecture and optimization.

  `steps` counts generator steps (the VAE: optimizer steps); a GAN also takes
  `n_critic` critic steps before each.  Adam with `lr`, `b1`, `b2`.
  """
  kind: str = "wgan_gp"
  arch: str = "mlp"                # gan.ARCHS; the VAE is an MLP
  latent: int = 64                 # L
  width: int = 128
  steps: int = 2000
  batch: int = 64
  lr: float = 2e-4
  b1: float = 0.5
  b2: float = 0.9
  n_critic: int = 5
  gp_weight: float = 10.0          # WGAN-GP's λ
  beta: float = 1.0                # the VAE's KL weight
  obs_std: float = 0.2             # the VAE decoder's std on the [−1, 1] scale
  chunk: int = 500                 # steps per jitted call
  checkpoint_every: int = 1000     # steps between checkpoints (a multiple of chunk)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}.")
    if self.arch not in gan.ARCHS or (self.kind == "vae" and self.arch != "mlp"):
      raise ValueError(f"arch must be one of {gan.ARCHS} (the VAE: 'mlp'); got {self.arch!r}.")
    for name in ("latent", "width", "steps", "batch", "n_critic", "chunk", "checkpoint_every"):
      validation.check_int(getattr(self, name), name, minimum=1)
    if self.checkpoint_every % self.chunk:
      raise ValueError(f"checkpoint_every must be a multiple of chunk ({self.chunk}); got "
                       f"{self.checkpoint_every}.")
    for name in ("lr", "obs_std"):
      validation.check_number(getattr(self, name), name, lo=0.0, lo_open=True)
    for name in ("b1", "b2"):
      validation.check_number(getattr(self, name), name, lo=0.0, hi=1.0, hi_open=True)
    validation.check_number(self.gp_weight, "gp_weight", lo=0.0)
    validation.check_number(self.beta, "beta", lo=0.0)


class GenGroup(NamedTuple):
  """The generators of one variant, stacked along `M`."""
  name: str
  settings: GenerativeSettings
  graphdef: Any                   # the generator's (GAN) or the VAE's graph
  params: Any                     # its parameters, every leaf `[M, ...]`
  seeds: np.ndarray               # [M]
  workdir: str
  info: dict

  def generate(self, z) -> np.ndarray:
    """`[M, B, H, W, C]`: every model from the same latents `z [B, L]`."""
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[1] != self.settings.latent:
      raise ValueError(f"z must have shape [B, {self.settings.latent}]; got {z.shape}.")
    return np.asarray(_generate_stacked(self.graphdef, self.settings.kind, self.params, z))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _generate_stacked(graphdef, kind, params, z):
  fn = vae.generate if kind == "vae" else gan.generate
  return jax.vmap(lambda p: fn(graphdef, p, z))(params)


# Models and their states ------------------------------------------------------------

def _models(s: GenerativeSettings, data_shape, key):
  rngs = nnx.Rngs(key)
  if s.kind == "vae":
    return vae.VAE(data_shape, s.latent, s.width, rngs=rngs), None
  return (gan.Generator(data_shape, s.latent, s.width, s.arch, rngs=rngs),
          gan.Critic(data_shape, s.width, s.arch, spectral=s.kind == "sngan", rngs=rngs))


@functools.lru_cache(maxsize=None)
def graphdefs(s: GenerativeSettings, data_shape: tuple):
  """`(generator graphdef, critic graphdef or None)` (no compute)."""
  g, d = nnx.eval_shape(lambda: _models(s, data_shape, jax.random.key(0)))
  return (nnx.split(g, nnx.Param)[0],
          None if d is None else nnx.split(d, nnx.Param, nnx.BatchStat)[0])


# Numeric hyperparameters: traced arguments of the jitted chunk, so that variants
# differing only in them (e.g. two VAEs with different β) share one compilation.
HYPER = ("lr", "b1", "b2", "gp_weight", "beta", "obs_std")


def _hyper(s: GenerativeSettings) -> dict:
  return {k: jnp.asarray(getattr(s, k), jnp.float32) for k in HYPER}


def _structure(s: GenerativeSettings) -> GenerativeSettings:
  """`s` with its numeric hyperparameters, step count and checkpointing blanked (the
  compile key)."""
  return dataclasses.replace(s, steps=1, chunk=1, checkpoint_every=1,
                             **{k: getattr(GenerativeSettings(), k) for k in HYPER})


def _optimizer(hp):
  return optax.adam(hp["lr"], b1=hp["b1"], b2=hp["b2"])


def init_state(s: GenerativeSettings, data_shape: tuple, key) -> dict:
  """One model's train state: `{"g", "opt_g"[, "d", "stats", "opt_d"]}`."""
  g, d = _models(s, data_shape, key)
  gp = nnx.split(g, nnx.Param)[1]
  state = {"g": gp, "opt_g": _optimizer(_hyper(s)).init(gp)}
  if d is not None:
    _, dp, stats = nnx.split(d, nnx.Param, nnx.BatchStat)
    state.update(d=dp, stats=stats, opt_d=_optimizer(_hyper(s)).init(dp))
  return state


def _apply_grads(hp, params, grads, opt_state):
  updates, opt_state = _optimizer(hp).update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _gan_step(s: GenerativeSettings, hp, gd_g, gd_d, data, state, key):
  """`n_critic` critic steps then one generator step; returns (state, losses [2])."""
  n, b = data.shape[0], s.batch

  def critic_step(st, k):
    k1, k2, k3 = jax.random.split(k, 3)
    real = data[jax.random.randint(k1, (b,), 0, n)]
    fake = lax.stop_gradient(nnx.merge(gd_g, st["g"])(jax.random.normal(k2, (b, s.latent))))

    def loss(dp, stats):            # stats as an argument: SpectralNorm updates them
      critic = nnx.merge(gd_d, dp, stats, copy=True)
      if s.kind == "wgan_gp":
        scores = critic(jnp.concatenate([real, fake]))
        l_d, _ = gan.wgan_losses(scores[:b], scores[b:])
        pen = gan.gradient_penalty(lambda x: nnx.merge(gd_d, dp, stats, copy=True)(x), real, fake,
                                   jax.random.uniform(k3, (b,)))
        return l_d + hp["gp_weight"] * pen, stats
      scores = critic(jnp.concatenate([real, fake]), update_stats=True)
      l_d, _ = gan.hinge_losses(scores[:b], scores[b:])
      return l_d, nnx.state(critic, nnx.BatchStat)

    (l_d, stats), grads = jax.value_and_grad(loss, has_aux=True)(st["d"], st["stats"])
    dp, opt_d = _apply_grads(hp, st["d"], grads, st["opt_d"])
    return dict(st, d=dp, stats=stats, opt_d=opt_d), l_d

  k_d, k_g = jax.random.split(key)
  state, l_ds = lax.scan(critic_step, state, jax.random.split(k_d, s.n_critic))

  def g_loss(gp):
    fake = nnx.merge(gd_g, gp)(jax.random.normal(k_g, (b, s.latent)))
    return -jnp.mean(nnx.merge(gd_d, state["d"], state["stats"], copy=True)(fake))

  l_g, grads = jax.value_and_grad(g_loss)(state["g"])
  gp, opt_g = _apply_grads(hp, state["g"], grads, state["opt_g"])
  return dict(state, g=gp, opt_g=opt_g), jnp.stack([l_ds[-1], l_g])


def _vae_step(s: GenerativeSettings, hp, gd, data, state, key):
  """One Adam step on the negative ELBO; returns (state, [recon, kl])."""
  k1, k2 = jax.random.split(key)
  x = data[jax.random.randint(k1, (s.batch,), 0, data.shape[0])]

  def loss(p):
    recon, kl = vae.elbo_terms(nnx.merge(gd, p), x, k2, hp["obs_std"])
    return jnp.mean(recon + hp["beta"] * kl), jnp.stack([jnp.mean(recon), jnp.mean(kl)])

  (_, parts), grads = jax.value_and_grad(loss, has_aux=True)(state["g"])
  gp, opt_g = _apply_grads(hp, state["g"], grads, state["opt_g"])
  return dict(state, g=gp, opt_g=opt_g), parts


@functools.lru_cache(maxsize=None)
def _chunk_fn(s: GenerativeSettings, data_shape: tuple, length: int):
  """Jitted `(states [M], model keys [M], data, start, hyper) -> (states, mean losses
  [M, 2])`; `s` is a `_structure` (its numeric hyperparameters come as `hyper`)."""
  gd_g, gd_d = graphdefs(s, data_shape)

  def one(state, key, data, start, hp):
    def body(st, step):
      k = jax.random.fold_in(key, step)
      if s.kind == "vae":
        return _vae_step(s, hp, gd_g, data, st, k)
      return _gan_step(s, hp, gd_g, gd_d, data, st, k)
    state, losses = lax.scan(body, state, start + jnp.arange(length))
    return state, jnp.mean(losses, axis=0)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))


def _flat(tree) -> dict:
  """`{"p000": leaf, ...}`: the leaves of `tree` in order (the checkpoint's keys)."""
  return {f"p{i:03d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def _unflat(template, flat: dict):
  leaves, treedef = jax.tree.flatten(template)
  return jax.tree.unflatten(treedef, [jnp.asarray(flat[f"p{i:03d}"])
                                      for i in range(len(leaves))])


def _hashed(s: GenerativeSettings) -> dict:
  """The settings that define the trained models (`HASH_EXCLUDED` left out)."""
  return {k: v for k, v in settings_lib.to_dict(s).items() if k not in HASH_EXCLUDED}


def _images_digest(x: np.ndarray) -> str:
  h = hashlib.sha256(str(x.shape).encode())
  h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()[:16]


class _Run(NamedTuple):
  states: Any             # the stacked train state, or `{"g": ...}` (generator-only layout)
  history: np.ndarray     # [chunks trained here, M, 2]
  start: int              # the step resumed from (0: fresh)
  last_losses: Any        # the last chunk's mean losses [M, 2] (list), or None


def _check_same_run(meta: dict, s: GenerativeSettings, seeds, x, workdir) -> None:
  """Refuse a checkpoint of other models: other settings (up to `RESUMABLE`), seeds,
  data shape or images."""
  saved = {k: v for k, v in meta["config"].items()
           if k not in HASH_EXCLUDED and k not in RESUMABLE}
  want = {k: v for k, v in _hashed(s).items() if k not in RESUMABLE}
  diff = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
  problems = [f"settings {', '.join(diff)}"] if diff else []
  if [int(v) for v in meta.get("seeds", seeds)] != list(seeds) or meta["num_models"] != len(seeds):
    problems.append("seeds")
  if list(meta["data_shape"]) != list(x.shape[1:]):
    problems.append("data shape")
  if meta.get("images", _images_digest(x)) != _images_digest(x):
    problems.append("images")
  if problems:
    raise ValueError(f"{workdir} holds other models ({'; '.join(problems)} differ); use a "
                     "new workdir.")


def _run(s: GenerativeSettings, x: np.ndarray, seeds: list, workdir=None) -> _Run:
  """Train (or resume, with a `workdir`) `len(seeds)` models; see `train`."""
  data_shape, m = tuple(x.shape[1:]), len(seeds)
  keys = jnp.stack([jax.random.key(int(sd)) for sd in seeds])
  init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
  step_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
  init = jax.vmap(lambda k: init_state(s, data_shape, k))
  total, start, last = int(s.steps), 0, None
  mngr = None if workdir is None else checkpoint.manager(str(workdir), keep=KEEP)
  try:
    states = None
    if mngr is not None:
      full = jax.eval_shape(init, init_keys)

      def abstract(meta, _):
        _check_same_run(meta, s, seeds, x, workdir)
        if meta.get("layout") == LAYOUT:
          return {k: _flat(v) for k, v in full.items()}
        return _flat(full["g"])            # the generator only (earlier versions)

      restored = checkpoint.restore(mngr, abstract, set_aside=True)
      if restored is not None:
        start, last = int(restored.step), restored.meta.get("losses")
        if start > total:
          raise ValueError(f"{workdir} holds step {start}, past steps={total}; use a new "
                           "workdir.")
        if restored.meta.get("layout") != LAYOUT:
          if start != total:
            raise ValueError(f"{workdir} holds the generators only, at step {start} (not "
                             f"{total}): nothing to resume from; use a new workdir.")
          return _Run({"g": _unflat(full["g"], restored.state)}, np.zeros((0, m, 2)), start,
                      last)
        states = {k: _unflat(full[k], restored.state[k]) for k in full}
        logging.info("generative: %s resumed %d models from step %d/%d in %s", s.kind, m,
                     start, total, workdir)
      meta = dict(config=settings_lib.to_dict(s), seeds=list(seeds), num_models=m,
                  data_shape=list(data_shape), images=_images_digest(x), layout=LAYOUT)
    if states is None:
      states = jax.jit(init)(init_keys)
    data, hyper = jnp.asarray(x), _hyper(s)
    history, done, saved = [], start, start
    t_begin = time.time()

    def save(step):
      nonlocal saved
      checkpoint.save(mngr, step, {k: _flat(v) for k, v in states.items()}, np.arange(len(x)),
                      len(x), dict(meta, losses=last))
      saved = step

    try:
      while done < total:
        length = min(int(s.chunk) - done % int(s.chunk), total - done)   # aligned chunks
        t0 = time.time()
        new, losses = _chunk_fn(_structure(s), data_shape, length)(states, step_keys, data,
                                                                   done, hyper)
        losses = np.asarray(losses)                                      # waits for the chunk
        rate = length / max(time.time() - t0, 1e-9)
        if not np.all(np.isfinite(losses)):
          raise validation.DivergedError(
              f"{s.kind} training diverged in steps {done}..{done + length} (losses hold NaN "
              f"or inf); " + (f"the last checkpoint is step {saved}." if mngr is not None
                              and saved else "no checkpoint was saved."))
        states, done, last = new, done + length, losses.tolist()
        history.append(losses)
        logging.info("generative: %s step %d/%d  losses %s  %.1f steps/s  ETA %s "
                     "(elapsed %.0fs)", s.kind, done, total,
                     np.array2string(losses.mean(0), precision=4), rate,
                     loop._fmt_eta((total - done) / rate), time.time() - t_begin)
        if mngr is not None and (done % int(s.checkpoint_every) == 0 or done == total):
          save(done)
    except KeyboardInterrupt:
      if mngr is not None and done > saved:      # the last finished chunk, not the one in flight
        save(done)
      logging.warning("generative: interrupted at step %d; %s.", done,
                      f"last checkpoint: step {saved}" if mngr is not None and saved
                      else "no checkpoint saved")
      raise
    bad = checkpoint.non_finite_leaves(states["g"])
    if bad:
      raise validation.DivergedError(f"{s.kind} training diverged: {', '.join(bad)} hold NaN "
                                     "or inf.")
    return _Run(states, np.stack(history) if history else np.zeros((0, m, 2)), start, last)
  finally:
    if mngr is not None:
      mngr.wait_until_finished()
      mngr.close()


def train(s: GenerativeSettings, images, seeds: Sequence[int], workdir=None):
  """Train `len(seeds)` models of variant `s` on `images [N, H, W, C]`.

  With a `workdir`, the full train states are saved in `workdir/checkpoints`
  every `s.checkpoint_every` steps, at the end and on Ctrl-C (the last finished
  chunk), and a rerun resumes from the latest intact checkpoint, bit for bit as
  if it had not stopped (it may raise `steps`); a checkpoint of other settings,
  seeds or images is refused.  Progress (losses, steps/s, ETA) is logged per chunk.

  Returns:
    `(states, history)`: the stacked train states (leaves `[M, ...]`; only `{"g"}`
    when `workdir` holds a finished generator-only checkpoint) and the mean
    losses of each chunk trained by this call, `[chunks, M, 2]` (GAN: critic,
    generator; VAE: reconstruction, KL).
  """
  x = np.asarray(images, np.float32)
  if x.ndim != 4 or x.shape[0] < 2:
    raise ValueError(f"images must have shape [N >= 2, H, W, C]; got {x.shape}.")
  validation.check_finite(x, "images")
  if not len(seeds):
    raise ValueError("seeds must not be empty.")
  run = _run(s, x, [int(sd) for sd in seeds], workdir)
  return run.states, run.history


def abstract_step(s: GenerativeSettings, data_shape: tuple, rows: int):
  """`(fn, args)`: one training step of one model of variant `s` on `rows` images
  (the critic steps included), `args` abstract (`jax.ShapeDtypeStruct`s, nothing
  allocated) for a cost analysis such as `studies.plan.program_flops`."""
  st, shape = _structure(s), tuple(data_shape)
  one = jax.eval_shape(lambda: init_state(st, shape, jax.random.key(0)))
  states = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1,) + a.shape, a.dtype), one)
  keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), 1))
  data = jax.ShapeDtypeStruct((int(rows),) + shape, jnp.float32)
  start = jax.ShapeDtypeStruct((), jnp.int32)
  hyper = jax.eval_shape(lambda: _hyper(s))
  return _chunk_fn(st, shape, 1), (states, keys, data, start, hyper)


def num_params(s: GenerativeSettings, data_shape: tuple) -> int:
  """Trained parameters of one model (generator or VAE, and the critic)."""
  one = jax.eval_shape(lambda: init_state(s, tuple(data_shape), jax.random.key(0)))
  return int(sum(np.prod(a.shape) for k in ("g", "d") if k in one
                 for a in jax.tree.leaves(one[k])))


# Kept and restored -------------------------------------------------------------------

# Settings that do not change the trained models: left out of the group's hash (so
# that groups kept before they existed are still found) and free to change when
# resuming, as `steps` is.
HASH_EXCLUDED = ("checkpoint_every",)
RESUMABLE = ("steps",)


def group_hash(s: GenerativeSettings, seeds, images) -> str:
  h = hashlib.sha256()
  h.update(json.dumps(_hashed(s), sort_keys=True).encode())
  h.update(json.dumps([int(sd) for sd in seeds]).encode())
  x = np.ascontiguousarray(np.asarray(images, np.float32))
  h.update(str(x.shape).encode())
  h.update(x.tobytes())
  return h.hexdigest()[:10]


def ensure_group(s: GenerativeSettings, images, seeds: Sequence[int], zoo_dir,
                 name: str) -> GenGroup:
  """Restore the group from `<zoo_dir>/<name>-<hash>/`, or train it there (resuming
  from its latest checkpoint, see `train`)."""
  x = np.asarray(images, np.float32)
  if x.ndim != 4 or x.shape[0] < 2:
    raise ValueError(f"images must have shape [N >= 2, H, W, C]; got {x.shape}.")
  validation.check_finite(x, "images")
  seeds = [int(sd) for sd in seeds]
  if not seeds:
    raise ValueError("seeds must not be empty.")
  data_shape = tuple(x.shape[1:])
  workdir = pathlib.Path(zoo_dir) / f"{name}-{group_hash(s, seeds, x)}"
  info_path = workdir / INFO_FILE
  t0 = time.time()
  run = _run(s, x, seeds, workdir)
  params = run.states["g"]
  if run.start == int(s.steps) and info_path.exists():
    info = io.load_json(info_path)
    logging.info("generative: restored %s (%d models) from %s", name, len(seeds), workdir)
  else:
    final = run.history[-1].tolist() if len(run.history) else run.last_losses
    info = dict(name=name, train_seconds=time.time() - t0, steps=int(s.steps),
                final_losses_per_model=final, seeds=seeds)
    if run.start:
      info["resumed_from_step"] = run.start
    io.save_json(info_path, info)
    logging.info("generative: trained %s (%d models, from step %d) in %.0fs", name,
                 len(seeds), run.start, info["train_seconds"])
  return GenGroup(name, s, graphdefs(s, data_shape)[0], params, np.asarray(seeds), str(workdir),
                  info)
