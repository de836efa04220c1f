"""Every seed of one GAN or VAE variant, trained in one vmapped program, kept, restored.

A *group* is `M = len(seeds)` models of one variant (`GenerativeSettings`),
trained on the same images with different initializations and batch orders:
the train states are stacked along a leading axis `M`, one jitted call runs
`chunk` steps of every model (`jax.vmap` over the models of a `lax.scan` over
the steps), and the generators' parameters are saved with orbax
(`training.checkpoint`) in `<zoo_dir>/<name>-<hash>/`, the hash covering the
settings, the seeds and the images, so that a second run restores them
(`ensure_group`, as `model_zoo.ensure_group` does for denoisers).

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

KINDS = ("wgan_gp", "sngan", "vae")
INFO_FILE = "gen_info.json"


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

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}.")
    if self.arch not in gan.ARCHS or (self.kind == "vae" and self.arch != "mlp"):
      raise ValueError(f"arch must be one of {gan.ARCHS} (the VAE: 'mlp'); got {self.arch!r}.")
    for name in ("latent", "width", "steps", "batch", "n_critic", "chunk"):
      validation.check_int(getattr(self, name), name, minimum=1)
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
  """`s` with its numeric hyperparameters and step count blanked (the compile key)."""
  return dataclasses.replace(s, steps=1, **{k: getattr(GenerativeSettings(), k)
                                           for k in HYPER})


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


def train(s: GenerativeSettings, images, seeds: Sequence[int]):
  """Train `len(seeds)` models of variant `s` on `images [N, H, W, C]`.

  Returns:
    `(states, history)`: the stacked train states (leaves `[M, ...]`) and the
    mean losses of each chunk, `[chunks, M, 2]` (GAN: critic, generator;
    VAE: reconstruction, KL).
  """
  x = np.asarray(images, np.float32)
  if x.ndim != 4 or x.shape[0] < 2:
    raise ValueError(f"images must have shape [N >= 2, H, W, C]; got {x.shape}.")
  validation.check_finite(x, "images")
  if not len(seeds):
    raise ValueError("seeds must not be empty.")
  data_shape = tuple(x.shape[1:])
  keys = jnp.stack([jax.random.key(int(sd)) for sd in seeds])
  init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
  step_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
  states = jax.jit(jax.vmap(lambda k: init_state(s, data_shape, k)))(init_keys)
  data = jnp.asarray(x)
  history, done = [], 0
  while done < s.steps:
    length = min(int(s.chunk), int(s.steps) - done)
    states, losses = _chunk_fn(_structure(s), data_shape, length)(states, step_keys, data,
                                                                  done, _hyper(s))
    history.append(np.asarray(losses))
    done += length
  bad = checkpoint.non_finite_leaves(states["g"])
  if bad:
    raise validation.DivergedError(f"{s.kind} training diverged: {', '.join(bad)} hold NaN "
                                   "or inf.")
  return states, np.stack(history)


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

def group_hash(s: GenerativeSettings, seeds, images) -> str:
  h = hashlib.sha256()
  h.update(settings_lib.to_json(s).encode())
  h.update(json.dumps([int(sd) for sd in seeds]).encode())
  x = np.ascontiguousarray(np.asarray(images, np.float32))
  h.update(str(x.shape).encode())
  h.update(x.tobytes())
  return h.hexdigest()[:10]


def _abstract_params(s: GenerativeSettings, data_shape: tuple, m: int):
  one = jax.eval_shape(lambda: init_state(s, data_shape, jax.random.key(0))["g"])
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct((m,) + a.shape, a.dtype), one)


def ensure_group(s: GenerativeSettings, images, seeds: Sequence[int], zoo_dir,
                 name: str) -> GenGroup:
  """Restore the group from `<zoo_dir>/<name>-<hash>/`, or train and save it."""
  x = np.asarray(images, np.float32)
  seeds = [int(sd) for sd in seeds]
  data_shape = tuple(x.shape[1:])
  workdir = pathlib.Path(zoo_dir) / f"{name}-{group_hash(s, seeds, x)}"
  abstract = _abstract_params(s, data_shape, len(seeds))
  leaves, treedef = jax.tree.flatten(abstract)
  target = {f"p{i:03d}": leaf for i, leaf in enumerate(leaves)}
  mngr = checkpoint.manager(str(workdir), keep=1)
  restored = checkpoint.restore(mngr, lambda meta, data: target)
  info_path = workdir / INFO_FILE
  if restored is not None:
    params = jax.tree.unflatten(treedef, [jnp.asarray(restored.state[k]) for k in target])
    info = io.load_json(info_path) if info_path.exists() else {}
    logging.info("generative: restored %s (%d models) from %s", name, len(seeds), workdir)
  else:
    t0 = time.time()
    states, history = train(s, x, seeds)
    params = states["g"]
    flat = {f"p{i:03d}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(params))}
    checkpoint.save(mngr, int(s.steps), flat, np.arange(len(x)), len(x),
                    dict(config=settings_lib.to_dict(s), seeds=seeds, num_models=len(seeds),
                         data_shape=list(data_shape)))
    mngr.wait_until_finished()
    info = dict(name=name, train_seconds=time.time() - t0, steps=int(s.steps),
                final_losses_per_model=history[-1].tolist(), seeds=seeds)
    io.save_json(info_path, info)
    logging.info("generative: trained %s (%d models) in %.0fs", name, len(seeds),
                 info["train_seconds"])
  mngr.close()
  return GenGroup(name, s, graphdefs(s, data_shape)[0], params, np.asarray(seeds), str(workdir),
                  info)
