"""The DiT denoiser: shapes at several resolutions, exactly zero at initialization,
a parameter count against a hand count, patches cut as slices of the image,
equivariance to patch permutations once the position embedding is removed
(and position dependence with it), conditioning, dropout, gradients reaching
every parameter, options refused before anything is built, and `train_many`.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.networks import model_zoo
from repro_jax.networks import models
from repro_jax.networks import training
from repro_jax.networks.models import transformer

from abstract_models import abstract_run
from abstract_models import check_labels_and_dropout

_TINY = dict(width=16, depth=2, num_heads=2, emb_dim=8)


def _net(shape, **opts):
  graphdef, shapes = models.abstract("dit", shape, **{**_TINY, **opts})
  return graphdef, models.init_params(shapes, jax.random.key(0))


def _perturbed(params, scale=0.3):
  """Random parameters everywhere (the zero-initialized layers included)."""
  rng = np.random.RandomState(7)
  return jax.tree.map(lambda a: a + scale * rng.randn(*a.shape).astype(np.float32), params)


@pytest.mark.parametrize("shape, patch_size", [((8, 8, 1), 2), ((4, 4, 3), 2),
                                               ((32, 32, 3), 4)])
def test_dit_maps_images_to_their_shape_and_starts_at_zero(shape, patch_size):
  graphdef, params = _net(shape, patch_size=patch_size)
  x = jax.random.normal(jax.random.key(1), (3,) + shape)
  c = jnp.array([1.0, 300.0, 900.0])
  f = jax.jit(lambda p: models.apply(graphdef, p, x, c))
  y = f(params)
  assert y.shape == x.shape
  np.testing.assert_array_equal(y, 0.0)          # adaLN-Zero: exactly 0 when fresh
  if shape == (4, 4, 3):       # the layers' own initializers agree (a model built directly)
    build = lambda k: models.split(models.build("dit", shape, k, patch_size=patch_size,
                                                **_TINY))[1]
    np.testing.assert_array_equal(f(jax.jit(build)(jax.random.key(2))), 0.0)
  y = f(_perturbed(params))
  assert bool(jnp.all(jnp.isfinite(y))) and float(jnp.std(y)) > 1e-3


def _hand_count(shape, width, depth, patch_size, mlp_ratio, emb_dim, num_classes=0):
  """Parameters of the DiT counted layer by layer (weights + biases)."""
  e, cin = 4 * emb_dim, patch_size**2 * shape[-1]
  dense = lambda i, o: i * o + o
  hid = int(round(width * mlp_ratio))
  embed = dense(emb_dim, e) + dense(e, e) + (num_classes + 1) * e * (num_classes > 0)
  block = (dense(e, 6 * width) + dense(width, 3 * width) + dense(width, width)
           + dense(width, hid) + dense(hid, width))
  return embed + dense(cin, width) + depth * block + dense(e, 2 * width) + dense(width, cin)


@pytest.mark.parametrize("shape, opts", [
    ((8, 8, 1), dict(width=64, depth=3, patch_size=2, mlp_ratio=4.0, emb_dim=64)),
    ((32, 32, 3), dict(width=384, depth=12, patch_size=4, mlp_ratio=4.0, emb_dim=96,
                       num_classes=10)),
])
def test_dit_abstract_allocates_nothing_and_counts_parameters(shape, opts):
  """`models.abstract` gives shapes only (a DiT-S-sized model in no time)."""
  count, out_shape = abstract_run("dit", shape, 2, num_heads=4, **opts)
  assert count == _hand_count(shape, **opts)
  assert out_shape == (2,) + shape


def test_patches_are_slices_of_the_image():
  x = np.random.RandomState(0).randn(2, 8, 12, 3).astype(np.float32)
  p = 4
  tokens = np.asarray(transformer.patchify(jnp.asarray(x), p))
  assert tokens.shape == (2, 2 * 3, p * p * 3)
  for r in range(2):
    for c in range(3):
      np.testing.assert_array_equal(tokens[:, r * 3 + c],
                                    x[:, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(2, -1))
  np.testing.assert_array_equal(transformer.unpatchify(tokens, (8, 12, 3), p), x)


def test_position_embedding_is_the_only_order_information(monkeypatch):
  """Permuting the patches of the input permutes those of the output exactly
  when the position embedding is zero; with it, the output depends on where
  a patch is."""
  shape, p = (8, 8, 1), 2
  graphdef, params = _net(shape, patch_size=p)
  params = _perturbed(params)
  x = jax.random.normal(jax.random.key(3), (2,) + shape)
  c = jnp.array([50.0, 500.0])
  perm = np.random.RandomState(1).permutation(16)
  permute = lambda a: transformer.unpatchify(transformer.patchify(a, p)[:, perm], shape, p)
  gap = lambda run: jnp.max(jnp.abs(run(permute(x)) - permute(run(x))))
  run = lambda a: models.apply(graphdef, params, a, c)
  assert float(jax.jit(lambda: gap(run))()) > 1e-2       # each jit traces anew
  monkeypatch.setattr(transformer, "sincos_position_embedding",
                      lambda rows, cols, dim: np.zeros((rows * cols, dim), np.float32))
  assert float(jax.jit(lambda: gap(run))()) < 1e-5


def test_sincos_position_embedding():
  emb = transformer.sincos_position_embedding(3, 5, 10)
  assert emb.shape == (15, 10) and emb.dtype == np.float32
  # Row features change with the row only, column features with the column only.
  grid = emb.reshape(3, 5, 10)
  assert np.ptp(grid[:, :, :5], axis=1).max() == 0 and np.ptp(grid[:, :, 5:], axis=0).max() == 0
  np.testing.assert_allclose(grid[1, 0, :3], np.sin([1.0, 1e-4 ** (1 / 3), 1e-4 ** (2 / 3)]),
                             rtol=1e-6)
  assert len({tuple(row) for row in emb}) == 15     # every position distinct
  assert transformer.sincos_position_embedding(2, 2, 7).shape == (4, 7)


def test_dit_gradients_reach_every_parameter():
  shape = (4, 4, 3)
  graphdef, params = _net(shape, patch_size=2)
  params = _perturbed(params)
  x = jax.random.normal(jax.random.key(4), (4,) + shape)
  target = jax.random.normal(jax.random.key(5), x.shape)
  c = jnp.array([0.0, 10.0, 500.0, 999.0])
  loss = lambda p: jnp.mean(jnp.square(models.apply(graphdef, p, x, c) - target))
  grads = jax.jit(jax.grad(loss))(params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    g = np.asarray(g)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, jax.tree_util.keystr(path)


def test_dit_class_conditioning_and_dropout():
  graphdef, params = _net((8, 8, 1), num_classes=10, dropout=0.5)
  check_labels_and_dropout(graphdef, _perturbed(params))


@pytest.mark.parametrize("shape, opts, match", [
    ((48,), {}, "model.name='mlp'"),
    ((8, 8, 1), dict(patch_size=3), "does not divide the image size 8×8"),
    ((8, 8, 1), dict(width=12, num_heads=5), "num_heads=5 does not divide width=12"),
    ((8, 8, 1), dict(mlp_ratio=0.0), "mlp_ratio"),
    ((8, 8, 1), dict(depth=0), "depth"),
    ((8, 8, 1), dict(dropout=1.0), "dropout"),
    ((8, 8, 1), dict(embedding="wavelet"), "noise embedding"),
])
def test_dit_rejects_bad_options(shape, opts, match, monkeypatch):
  """Checked before any layer is made."""
  def refuse(*args, **kwargs):
    raise AssertionError("built a layer before checking the options")
  monkeypatch.setattr(transformer.nnx, "Linear", refuse)
  with pytest.raises(ValueError, match=match):
    models.abstract("dit", shape, **opts)


def _dit_config(**model):
  return settings_lib.override(training.variant("smoke"), dict(
      data=dict(num_train=32),
      model=dict(name="dit", **{**_TINY, "patch_size": 2, **model}),
      optim=dict(learning_rate=3e-3, warmup_steps=5),
      train=dict(batch_size=16, num_steps=20, log_every=10, checkpoint_every=20)))


def test_training_config_checks_the_dit_before_reading_data(tmp_path):
  with pytest.raises(ValueError, match="num_heads=3 does not divide width=16"):
    training.check_config(_dit_config(num_heads=3))          # no data needed
  with pytest.raises(ValueError, match="does not divide the image size 8×8"):
    training.train(_dit_config(patch_size=3), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_train_many_trains_two_dits():
  cfg = _dit_config(depth=1)
  states, history = training.train_many(cfg, seeds=(0, 1),
                                        subsets=[np.arange(16), np.arange(16, 48)])
  p = training.make_trainer(cfg, (8, 8, 1)).layout.size
  assert states.params.shape == (2, p) and [h["step"] for h in history] == [10, 20]
  losses = np.array([h["loss_per_model"] for h in history])
  assert np.all(np.isfinite(losses)) and not np.allclose(states.params[0], states.params[1])


def test_a_zoo_of_dits():
  """A zoo takes the DiT by name, its width is `model.width`, and every DiT
  option is part of a group's hash."""
  zoo = model_zoo.ZooSettings(model="dit", widths=(16, 32), sizes=(4, 8), seeds=(0,),
                              train=_dit_config())
  cfg = model_zoo.train_config(zoo, 32)
  assert (cfg.model.name, cfg.model.width, cfg.model.hidden) == ("dit", 32, 256)
  subsets = model_zoo.nested_subsets(64, zoo.sizes, zoo.subset_seed)
  digest = lambda c: model_zoo.group_hash(c, zoo.sizes, zoo.seeds, subsets)
  changed = [settings_lib.override(cfg, {"model": {k: v}}) for k, v in
             (("patch_size", 4), ("num_heads", 4), ("mlp_ratio", 2.0), ("depth", 3))]
  assert len({digest(c) for c in [cfg] + changed}) == 5
  with pytest.raises(ValueError, match="zoo.model must be one of unet, mlp, dit"):
    model_zoo.ZooSettings(model="resnet")
