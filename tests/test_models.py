"""Networks and parameterizations: shapes at several resolutions, validation,
initialization, and the parameterization wraps checked against an oracle net
(the exact denoiser of a one-point data set, whose loss must be 0 and whose
canonical wrap must return that point for every x and σ).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax.networks import models
from repro_jax.diffusion import schedules

from abstract_models import abstract_run
from abstract_models import check_labels_and_dropout


def _net(name, shape, **opts):
  graphdef, shapes = models.abstract(name, shape, **opts)
  return graphdef, models.init_params(shapes, jax.random.key(0))


@pytest.mark.parametrize("shape, opts", [
    ((4, 4, 3), dict(width=8, norm_groups=4, ch_mult=(1, 2), attn_resolutions=(2,))),
    ((8, 8, 1), dict(width=8, norm_groups=4, embedding="fourier")),
])
def test_unet_forward_and_conditioning(shape, opts):
  graphdef, params = _net("unet", shape, **opts)
  # Perturb the zero-initialized output layer so the output depends on the input.
  params = jax.tree.map(lambda a: a + 0.01, params)
  x = jax.random.normal(jax.random.key(1), (2,) + shape)
  f = jax.jit(lambda p, x, c: models.apply(graphdef, p, x, c))
  y = f(params, x, jnp.array([10.0, 900.0]))
  assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
  # Different noise levels give different outputs for the same input.
  y2 = f(params, x, jnp.array([900.0, 10.0]))
  assert float(jnp.max(jnp.abs(y - y2))) > 1e-4


@pytest.mark.parametrize("shape, opts, params_range", [
    ((16, 16, 3), dict(width=16, ch_mult=(1, 2, 2), attn_resolutions=(8,)), (1e5, 1e6)),
    ((32, 32, 3), dict(width=32, ch_mult=(1, 2, 2), attn_resolutions=(16,)), (1e6, 3e6)),
    # The paper-scale configs (configs/train.py:paper, widths 64/128/256).
    ((32, 32, 3), dict(width=64, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                       attn_resolutions=(16,), norm_groups=32, dropout=0.1), (5e6, 2e7)),
    ((64, 64, 3), dict(width=32, ch_mult=(1, 2, 2, 2, 2), attn_resolutions=(16, 8)),
     (1e6, 1e7)),
])
def test_unet_shapes_larger_resolutions(shape, opts, params_range):
  """Shape inference only (no compile): the U-Net builds and maps x to x's shape."""
  n, out_shape = abstract_run("unet", shape, 4, **opts)
  assert params_range[0] < n < params_range[1]
  assert out_shape == (4,) + shape


def test_unet_class_conditioning_and_dropout():
  graphdef, params = _net("unet", (8, 8, 1), width=8, norm_groups=4, num_classes=10,
                          dropout=0.5)
  check_labels_and_dropout(graphdef, jax.tree.map(lambda a: a + 0.01, params))


@pytest.mark.parametrize("shape", [(48,), (8, 8, 1)])
def test_mlp_shapes(shape):
  graphdef, params = _net("mlp", shape, hidden=32, depth=2, emb_dim=16)
  x = jnp.ones((3,) + shape)
  y = jax.jit(lambda p: models.apply(graphdef, p, x, jnp.zeros(3)))(params)
  assert y.shape == x.shape
  # Zero-initialized output layer: the fresh network predicts 0.
  np.testing.assert_array_equal(y, 0.0)


def test_init_params_statistics():
  _, shapes = models.abstract("mlp", (64,), hidden=256, depth=1, emb_dim=16)
  p = models.init_params(shapes, jax.random.key(3))
  k = p["dense_in"]["kernel"]
  assert k.shape == (64, 256)
  assert abs(float(jnp.std(k)) - 1 / math.sqrt(64)) < 0.01
  np.testing.assert_array_equal(p["dense_in"]["bias"], 0.0)
  np.testing.assert_array_equal(p["norm_out"]["scale"], 1.0)
  np.testing.assert_array_equal(p["dense_out"]["kernel"], 0.0)
  q = models.init_params(shapes, jax.random.key(4))
  assert not np.array_equal(k, q["dense_in"]["kernel"])


@pytest.mark.parametrize("shape, opts, match", [
    ((48,), {}, "needs images"),
    ((8, 8, 1), dict(ch_mult=(1, 2, 2, 2, 2)), "not divisible"),
    ((8, 8, 1), dict(width=12, norm_groups=8), "do not divide"),
    ((8, 8, 1), dict(attn_resolutions=(16,)), "not among"),
    ((8, 8, 1), dict(embedding="wavelet"), "noise embedding"),
])
def test_unet_rejects_bad_options(shape, opts, match):
  with pytest.raises(ValueError, match=match):
    models.abstract("unet", shape, **opts)


def test_unknown_model_and_parameterization():
  with pytest.raises(ValueError, match="Unknown model"):
    models.build("resnet", (8, 8, 1), jax.random.key(0))
  with pytest.raises(ValueError, match="Unknown parameterization"):
    models.get_parameterization("v_pred")
  assert models.PARAMETERIZATIONS == ("eps", "x0", "v", "edm")
  with pytest.raises(ValueError, match="Unknown schedule"):
    models.get_parameterization("eps", "linear")


# Oracle nets: the exact denoiser of the one-point data set {y}. -----------------

_Y = jnp.array([[0.3, -0.7, 1.1]])


def _sigma_of_c(param, c):
  """Invert the parameterization's conditioning `c` back to (σ, s)."""
  if param.kind == "edm" or param.time_input == "log_sigma":
    sigma = jnp.exp(4.0 * c)
    return sigma, param.schedule.scale_of_sigma(sigma) if param.kind != "edm" else 1.0
  sch = param.schedule
  t = sch.t_min + c / 1000.0 * (sch.t_max - sch.t_min)
  return sch.sigma(t), sch.scale(t)


def _oracle(param):
  y = _Y

  def net(x_in, c):
    sigma, s = _sigma_of_c(param, c)
    sigma, s = sigma[:, None], jnp.reshape(jnp.asarray(s), (-1, 1))
    if param.kind == "eps":
      return (x_in / s - y) / sigma
    if param.kind == "x0":
      return jnp.broadcast_to(y, x_in.shape)
    if param.kind == "v":           # v = (ε − σ x0)/√(1 + σ²) of the ε that made x_in
      return ((x_in / s - y) / sigma - sigma * y) / jnp.sqrt(1.0 + sigma**2)
    c_skip, c_out, c_in = (v[:, None] for v in param.edm_coeffs(sigma[:, 0]))
    return (y - c_skip * (x_in / c_in)) / c_out
  return net


@pytest.mark.parametrize("kind, schedule, time_input", [
    ("eps", "vp", "t"), ("eps", "ddpm", "t"), ("eps", "ve", "log_sigma"),
    ("x0", "cosine", "t"), ("v", "vp", "t"), ("v", "subvp", "log_sigma"),
    ("edm", "edm", "t"),
])
def test_parameterization_oracle(x64, kind, schedule, time_input):
  param = models.get_parameterization(kind, schedule, time_input=time_input)
  net = _oracle(param)
  x0 = jnp.tile(_Y, (64, 1))
  loss = jax.jit(lambda x0, k: param.loss(net, x0, k))(x0, jax.random.key(0))
  assert loss.shape == (64,)
  np.testing.assert_allclose(loss, 0.0, atol=1e-9)
  denoise = jax.jit(param.denoiser(net))
  x = jax.random.normal(jax.random.key(1), (5, 3)) * 3.0
  sigmas = jnp.array([0.05, 0.3, 1.0, 5.0, 20.0])
  np.testing.assert_allclose(denoise(x, sigmas), jnp.tile(_Y, (5, 1)), atol=1e-8)


def test_noise_level_sampling():
  z = jax.random.normal(jax.random.key(0), (20000,))
  edm = models.get_parameterization("edm")
  _, sigma, scale = edm.sample_time(z)
  assert abs(float(jnp.mean(jnp.log(sigma))) + 1.2) < 0.03
  assert abs(float(jnp.std(jnp.log(sigma))) - 1.2) < 0.03
  np.testing.assert_array_equal(scale, 1.0)
  vp = models.get_parameterization("eps", "vp")
  t, _, _ = vp.sample_time(z)
  assert float(t.min()) >= 1e-3 and float(t.max()) <= 1.0
  assert abs(float(jnp.mean(t)) - (1 + 1e-3) / 2) < 0.01
  ddpm = models.get_parameterization("eps", "ddpm")
  t, sigma, _ = ddpm.sample_time(z)
  np.testing.assert_array_equal(t, jnp.round(t))
  assert float(t.min()) == 0.0 and float(t.max()) == 999.0
  sch = schedules.get_schedule("ddpm")
  np.testing.assert_allclose(sigma, sch.sigma(t), rtol=1e-6)


@pytest.mark.parametrize("sigma_data", [0.5, 0.3, 2.0])
def test_edm_preconditioning_is_karras_table_1(x64, sigma_data):
  """Karras et al. 2022, Table 1: c_skip = σd²/(σ²+σd²), c_out = σ·σd/√(σ²+σd²),
  c_in = 1/√(σ²+σd²), c_noise = ¼ ln σ; D = c_skip x + c_out F(c_in x, c_noise);
  the training target of F is (x0 − c_skip x)/c_out."""
  param = models.get_parameterization("edm", "edm", sigma_data=sigma_data)
  sd = sigma_data
  sigma = np.array([0.002, 0.1, 0.5, 1.0, 3.0, 80.0])
  skip = sd**2 / (sigma**2 + sd**2)
  out = sigma * sd / np.sqrt(sigma**2 + sd**2)
  inp = 1.0 / np.sqrt(sigma**2 + sd**2)
  noise = 0.25 * np.log(sigma)
  for got, want in zip(param.edm_coeffs(jnp.asarray(sigma)), (skip, out, inp)):
    np.testing.assert_allclose(got, want, rtol=1e-13)

  net = lambda x_in, c: jnp.sin(3.0 * x_in) + c[:, None] * jnp.arange(1.0, 4.0)
  f_np = lambda x_in, c: np.sin(3.0 * x_in) + c[:, None] * np.arange(1.0, 4.0)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 3)) * 5.0
  den = jax.jit(param.denoiser(net))
  want = skip[:, None] * x + out[:, None] * f_np(inp[:, None] * x, noise)
  np.testing.assert_allclose(den(x, sigma), want, rtol=1e-12, atol=1e-12)

  # The loss: σ = exp(P_mean + P_std·level), x = x0 + σ ε, ‖F(c_in x, c_noise) − target‖².
  x0, eps, level = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(size=6)
  s = np.exp(param.p_mean + param.p_std * level)
  xs = x0 + s[:, None] * eps
  k_skip = sd**2 / (s**2 + sd**2)
  k_out = s * sd / np.sqrt(s**2 + sd**2)
  k_in = 1.0 / np.sqrt(s**2 + sd**2)
  target = (x0 - k_skip[:, None] * xs) / k_out[:, None]
  want = np.mean((f_np(k_in[:, None] * xs, 0.25 * np.log(s)) - target) ** 2, axis=1)
  got = param.loss_given_noise(net, jnp.asarray(x0), jnp.asarray(eps), jnp.asarray(level))
  np.testing.assert_allclose(got, want, rtol=1e-11)


@pytest.mark.parametrize("schedule", ["vp", "subvp"])
def test_v_prediction_with_the_exact_velocity(x64, schedule):
  """A net returning the exact `v = (ε − σ x0)/√(1 + σ²)` of the x0 and ε that made
  its input `x_t = s (x0 + σ ε)` has loss 0, and the sampler wrap turns it back
  into x0 at every σ (the net being handed `s·x`, s of the schedule)."""
  param = models.get_parameterization("v", schedule)
  rng = np.random.default_rng(0)
  x0, eps, level = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=6)
  seen = []

  def net_returning(v):
    def net(x_in, c):
      seen.append(np.asarray(x_in))
      return jnp.asarray(v)
    return net

  # Training: σ and s of the draw, then the exact target.
  _, sigma, s = (np.asarray(a)[:, None] for a in param.sample_time(jnp.asarray(level)))
  v = (eps - sigma * x0) / np.sqrt(1.0 + sigma**2)
  loss = param.loss_given_noise(net_returning(v), jnp.asarray(x0), jnp.asarray(eps),
                                jnp.asarray(level))
  np.testing.assert_allclose(loss, 0.0, atol=1e-24)
  np.testing.assert_allclose(seen[-1], s * (x0 + sigma * eps), rtol=1e-12)
  wrong = param.loss_given_noise(net_returning(eps), jnp.asarray(x0), jnp.asarray(eps),
                                 jnp.asarray(level))
  np.testing.assert_allclose(wrong, np.mean((eps - v) ** 2, axis=1), rtol=1e-12)

  # Sampling: x = x0 + σ ε in VE coordinates at σ over the schedule's range.
  sigma = np.array([0.02, 0.3, 1.0, 4.0, 30.0, 100.0])[:, None]
  x = x0 + sigma * eps
  v = (eps - sigma * x0) / np.sqrt(1.0 + sigma**2)
  if schedule == "vp":                     # ᾱ = 1/(1 + σ²)
    s = 1.0 / np.sqrt(1.0 + sigma**2)
  else:                                    # σ = (1 − ᾱ)/√ᾱ: √ᾱ solves u² + σu − 1 = 0
    s = 2.0 / (sigma + np.sqrt(sigma**2 + 4.0))
  denoise = param.denoiser(net_returning(v))
  np.testing.assert_allclose(denoise(jnp.asarray(x), jnp.asarray(sigma[:, 0])), x0,
                             rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(seen[-1], s * x, rtol=1e-9)
