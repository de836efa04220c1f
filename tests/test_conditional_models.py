"""Class-conditional denoisers, classifier-free guidance and the conditional_models study."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax import samplers
from repro_jax import settings as settings_lib
from repro_jax.diffusion import guidance
from repro_jax.diffusion import schedules
from repro_jax.networks import training
from repro_jax.networks.training import step as step_lib
from repro_jax.studies import conditional_models as cm
from repro_jax.studies import runner

SHAPE = (4, 4, 1)


def _trainer(num_classes=3, parameterization="edm"):
  cfg = settings_lib.parse(training.TrainSettings, dict(
      data=dict(name="digits"),
      model=dict(name="mlp", hidden=16, depth=1, emb_dim=8, num_classes=num_classes,
                 label_dropout=0.1 if num_classes else 0.0),
      diffusion=dict(parameterization=parameterization, schedule="vp")))
  return training.make_trainer(cfg, SHAPE)


def _params(trainer, m, seed=0):
  """M random parameter vectors, perturbed so that every layer (zero-initialized
  output layers included) depends on its input and on the label."""
  keys = jax.random.split(jax.random.key(seed), 2 * m)
  out = []
  for i in range(m):
    p = step_lib.init_params(trainer, keys[i])
    out.append(p + 0.3 * jax.random.normal(keys[m + i], p.shape))
  return jnp.stack(out)


def test_guidance_endpoints_equal_null_and_conditional_through_a_sampler():
  """w = 0 rows sample like the null-label model, w = 1 rows like the conditional
  one (each model of a model-major stack alone, through the existing
  `network_denoiser`), to float precision."""
  trainer = _trainer()
  params = _params(trainer, 2)
  b = 6
  z = np.asarray(jax.random.normal(jax.random.key(1), (b,) + SHAPE))
  labels = np.array([0, 1, 2, 2, 1, 0], np.int32)
  w = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0], np.float32)       # per row
  sig = schedules.edm_sigmas(5, 0.002, 80.0)
  den = guidance.guided(trainer, params, labels, w)
  assert den.num_models == 2
  got = np.asarray(samplers.sample_batched(den, z, sig, sampler="heun").samples)  # [M, B]
  assert got.shape == (2, b) + SHAPE
  # Independently: each model alone through `network_denoiser`, the label of a
  # w = 1 row and the null label (−1) on a w = 0 row.
  mixed = np.where(w == 1, labels, -1).astype(np.int32)
  for m in range(2):
    one = training.network_denoiser(trainer, params[m], mixed)
    want = np.asarray(samplers.sample(one, z, sig, sampler="heun").samples)
    np.testing.assert_allclose(got[m], want, atol=2e-5, rtol=1e-5)
  # The label matters (else the check above could not fail).
  x1 = jnp.asarray(z) * 2.0
  s1 = jnp.full((b,), 0.5)
  d_c = jax.jit(training.network_denoiser(trainer, params[0], labels).fn)(x1, s1)
  d_n = jax.jit(training.network_denoiser(trainer, params[0], None).fn)(x1, s1)
  assert np.abs(np.asarray(d_c) - np.asarray(d_n)).max() > 1e-2
  # The models differ too: a row routed to the wrong model would be caught.
  assert np.abs(got[0] - got[1]).max() > 1e-2


def test_guidance_extrapolates_and_routes_labels_per_model():
  trainer = _trainer()
  params = _params(trainer, 2, seed=3)
  b = 4
  x = jax.random.normal(jax.random.key(2), (2 * b,) + SHAPE) * 2.0
  sigma = jnp.full((2 * b,), 0.7)
  # One label per row of the whole batch: model 1 gets other labels than model 0.
  labels = np.array([0, 1, 2, -1, 2, 2, 0, 1], np.int32)
  ev = lambda den, x, s: np.asarray(jax.jit(den.fn)(x, s))
  got = ev(guidance.guided(trainer, params, labels, 2.5), x, sigma)
  for m in range(2):
    rows = slice(m * b, (m + 1) * b)
    c = ev(training.network_denoiser(trainer, params[m], labels[rows]), x[rows], sigma[rows])
    u = ev(training.network_denoiser(trainer, params[m], None), x[rows], sigma[rows])
    np.testing.assert_allclose(got[rows], np.asarray(u + 2.5 * (c - u)), atol=1e-4,
                               rtol=1e-4)
  # Labels [B] are shared by every model of the stack.
  shared = ev(guidance.conditional(trainer, params, labels[:b]), x, sigma)
  for m in range(2):
    rows = slice(m * b, (m + 1) * b)
    want = ev(training.network_denoiser(trainer, params[m], labels[:b]), x[rows], sigma[rows])
    np.testing.assert_allclose(shared[rows], want, atol=1e-5, rtol=1e-5)


def test_bad_inputs_fail_before_any_work():
  trainer = _trainer()
  params = _params(trainer, 2)
  with pytest.raises(ValueError, match="labels"):
    guidance.conditional(trainer, params, np.array([0, 5]))
  with pytest.raises(ValueError, match="integers"):
    guidance.conditional(trainer, params, np.array([0.5]))
  with pytest.raises(ValueError, match="unconditional"):
    guidance.conditional(_trainer(num_classes=0), params[0], 0)
  with pytest.raises(ValueError, match="finite"):
    guidance.guided(trainer, params, 0, float("nan"))
  den = guidance.conditional(trainer, params, np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="cannot be applied"):       # 3 labels, 2 rows per model
    samplers.sample(den.fn, np.zeros((4,) + SHAPE, np.float32),
                    schedules.edm_sigmas(2, 0.002, 80.0), sampler="heun")
  data = np.zeros((3,) + SHAPE, np.float32)
  with pytest.raises(ValueError, match=r"label\(s\) \[2\]"):
    guidance.class_empirical(data, np.array([0, 0, 1]), np.array([0, 2]))


def test_class_empirical_against_numpy_float64(x64):
  rng = np.random.default_rng(0)
  n, d = 40, int(np.prod(SHAPE))
  data = rng.uniform(-1, 1, (n,) + SHAPE)
  data_labels = rng.integers(0, 4, n)
  labels = np.array([0, 1, 2, 3, -1, 2, 0])
  x = rng.normal(0, 1, (len(labels),) + SHAPE)
  sigma = np.array([0.05, 0.3, 1.0, 3.0, 0.5, 0.1, 20.0])
  got = np.asarray(guidance.class_empirical(data, data_labels, labels)(
      jnp.asarray(x), jnp.asarray(sigma)))
  flat, xf = data.reshape(n, d), x.reshape(len(x), d)
  for b, (lab, s) in enumerate(zip(labels, sigma)):
    rows = flat if lab == -1 else flat[data_labels == lab]
    logit = -np.sum((xf[b] - rows) ** 2, axis=1) / (2 * s * s)
    wgt = np.exp(logit - logit.max())
    want = (wgt / wgt.sum()) @ rows
    np.testing.assert_allclose(got[b].reshape(d), want, rtol=1e-10, atol=1e-12)
  # One class's denoiser is `denoiser.empirical` on that class.
  from repro_jax.diffusion import denoiser
  only = np.asarray(denoiser.empirical(data[data_labels == 2])(jnp.asarray(x[[2]]),
                                                               jnp.asarray(sigma[[2]])))
  np.testing.assert_allclose(got[2], only[0], rtol=1e-12)


def test_class_readers_read_training_images():
  from repro_jax import data
  from repro_jax.analysis import metrics
  from repro_jax.data.settings import DataSettings
  ds = data.load_dataset(DataSettings(name="digits"))
  sim = metrics.get_similarity("ncc", 0.9)
  x, y = ds.x[::30], ds.labels[::30]
  for reader in cm.CLASS_READERS:
    s = settings_lib.override(cm.settings("smoke"), dict(class_reader=reader))
    predict, acc = cm.classifier(s, ds, sim)
    got = predict(x)
    assert got.shape == y.shape
    if reader == "nearest":         # a training image's nearest image is itself
      np.testing.assert_array_equal(got, y)
      assert acc is None
    else:
      assert np.mean(got == y) > 0.95 and acc > 0.95


def test_rows_layout():
  s = cm.settings("smoke")
  z = np.arange(3 * 2, dtype=np.float32).reshape(3, 1, 1, 2)
  noise, labels, w = cm.rows(s, z)
  c, nw = s.num_classes, len(s.guidance_scales)
  assert noise.shape == (nw * c * 3, 1, 1, 2) and labels.shape == w.shape == (nw * c * 3,)
  r = 1 * c * 3 + 4 * 3 + 2          # w index 1, class 4, noise 2
  assert labels[r] == 4 and w[r] == s.guidance_scales[1]
  np.testing.assert_array_equal(noise[r], z[2])


def test_chunked_sampling_equals_one_call():
  """Noises in padded chunks (one compiled denoiser) give the one-call samples."""
  rng = np.random.default_rng(1)
  data = rng.uniform(-1, 1, (12,) + SHAPE).astype(np.float32)
  data_labels = np.arange(12) % 3
  noise = rng.normal(size=(5,) + SHAPE).astype(np.float32)
  sig = schedules.edm_sigmas(3, 0.002, 80.0)
  s = cm.settings("smoke")
  ds = type("D", (), dict(x=data, labels=data_labels))
  classes = np.array([0, 2])
  out = {}
  for chunk in (2, 5):
    sc = settings_lib.override(s, dict(chunk=chunk))
    out[chunk] = cm.sample_theory(sc, ds, np.arange(12), classes, noise, sig)
  assert out[2].shape == (2, 5) + SHAPE
  np.testing.assert_allclose(out[2], out[5], atol=1e-6)
  # Row (class c, noise b) is the class-c ε* sampled from noise b alone.
  one = guidance.class_empirical(data, data_labels, np.array([2], np.int32))
  want = np.asarray(samplers.sample(cm._wrap(s, one), noise[3:4], sig, sampler=s.sampler)
                    .samples)
  np.testing.assert_allclose(out[2][1, 3], want[0], atol=1e-5)


def test_pair_cells_against_brute_force():
  rng = np.random.default_rng(0)
  k, b = 5, 40
  hits = (rng.uniform(size=(k, k, b)) < 0.6).astype(np.float32)
  hits = (hits + hits.transpose(1, 0, 2)) / 2
  member_of = np.array([0, 0, 0, 1, 1])
  s = settings_lib.override(cm.settings("smoke"), dict(bootstrap_resamples=200))
  out = cm.pair_cells(hits, member_of, jax.random.key(0), s, 2)
  means = hits.astype(np.float64).mean(-1)
  within0 = np.mean([means[i, j] for i in range(3) for j in range(3) if i != j])
  across = np.mean([means[i, j] for i in range(3) for j in range(3, 5)])
  np.testing.assert_allclose(out["value"][0, 0], within0, rtol=1e-12)
  np.testing.assert_allclose(out["value"][0, 1], across, rtol=1e-12)
  np.testing.assert_allclose(out["all"]["value"], means[~np.eye(k, dtype=bool)].mean(),
                             rtol=1e-12)
  assert out["lo"][0, 1] <= out["value"][0, 1] <= out["hi"][0, 1]
  assert out["hi"][0, 1] - out["lo"][0, 1] > 0


def test_settings_refuse_bad_grids():
  with pytest.raises(ValueError, match="memorization_members"):
    settings_lib.override(cm.settings("smoke"), dict(memorization_members=("U-Net",)))
  with pytest.raises(ValueError, match="main_scale"):
    settings_lib.override(cm.settings("smoke"), dict(guidance_scales=(0.0, 2.0)))
  with pytest.raises(ValueError, match="sizes"):
    settings_lib.override(cm.settings("smoke"), dict(sizes=(32, 8)))


def test_smoke_run(tmp_path):
  s = settings_lib.override(cm.settings("smoke"), {"zoo": {"dir": str(tmp_path / "zoo")}})
  m = runner.run_study("conditional_models", s, tmp_path / "out")
  for f in ("samples.png", "rp_cond_classes.png", "between.png", "guidance.png",
            "threshold_band.png", "rp_theory.png", "metrics.json", "report.md"):
    assert (tmp_path / "out" / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 5 and m["similarity"] == "cal"
  assert json.loads((tmp_path / "out" / "metrics.json").read_text())["verdicts"] == m["verdicts"]
  gen = m["per_N"][str(s.sizes[-1])]
  assert set(gen["guidance"]) == {str(w) for w in s.guidance_scales}
  for v in gen["between"].values():
    for what in ("rp_between", "matched", "unmatched"):
      lo, hi = v[what]["ci"]
      assert 0.0 <= lo <= v[what]["value"] <= hi <= 1.0
    # The max over classes bounds the matching class's hit rate.
    assert v["matched"]["value"] <= v["rp_between"]["value"] + 1e-9
  # w = 1 is the main scale: the guidance sweep's cell equals RP_cond.
  np.testing.assert_allclose(gen["guidance"]["1.0"]["cells"]["value"], gen["rp_cond"]["value"])
  # At the memorization N only the classes of the subset are scored.
  assert m["per_N"][str(s.sizes[0])]["classes"] == m["classes"][str(s.sizes[0])]
