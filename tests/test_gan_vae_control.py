"""The GAN/VAE control (gan_vae_control) and its library (networks.generative):
the gradient penalty, the ELBO's KL, spectral normalization, FD and duplicates
against independent oracles; shapes, bad input, restore; a smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from repro_jax import settings as settings_lib
from repro_jax.networks.generative import gan
from repro_jax.networks.generative import train as gen_train
from repro_jax.networks.generative import vae
from repro_jax.studies import _gan_vae_scores as scores
from repro_jax.studies import gan_vae_control as gvc
from repro_jax.studies import runner


def test_gradient_penalty_against_finite_differences(x64):
  rng = np.random.default_rng(0)
  b, d, h = 5, 6, 4
  w, c, a = rng.normal(size=(h, d)), rng.normal(size=h), rng.normal(size=h)
  real, fake = rng.normal(size=(b, d)), rng.normal(size=(b, d))
  eps = rng.uniform(size=b)

  def critic_np(x):                                   # one image [D] -> scalar
    return float(a @ np.tanh(w @ x + c))

  def critic_jax(x):                                  # [B, D] -> [B]
    return jnp.tanh(x @ jnp.asarray(w).T + jnp.asarray(c)) @ jnp.asarray(a)

  want = []
  for i in range(b):
    x = eps[i] * real[i] + (1 - eps[i]) * fake[i]
    step = 1e-6
    grad = np.array([(critic_np(x + step * e) - critic_np(x - step * e)) / (2 * step)
                     for e in np.eye(d)])
    want.append((np.linalg.norm(grad) - 1.0) ** 2)
  got = gan.gradient_penalty(critic_jax, jnp.asarray(real), jnp.asarray(fake), jnp.asarray(eps))
  np.testing.assert_allclose(float(got), np.mean(want), rtol=1e-7)
  # Images: the interpolation and the norm run over every pixel.
  got_img = gan.gradient_penalty(lambda x: critic_jax(x.reshape(b, d)),
                                 jnp.asarray(real.reshape(b, 2, 3, 1)),
                                 jnp.asarray(fake.reshape(b, 2, 3, 1)), jnp.asarray(eps))
  np.testing.assert_allclose(float(got_img), np.mean(want), rtol=1e-7)


def test_kl_analytic_against_monte_carlo_and_elbo_terms():
  rng = np.random.default_rng(1)
  mu, logvar = rng.normal(size=(3, 4)), rng.normal(scale=0.5, size=(3, 4))
  got = np.asarray(vae.kl_diag_gaussian(jnp.asarray(mu), jnp.asarray(logvar)))
  n = 400_000
  std = np.exp(0.5 * logvar)
  z = mu[:, None] + std[:, None] * rng.standard_normal((3, n, 4))
  log_q = -0.5 * np.sum(((z - mu[:, None]) / std[:, None]) ** 2 + logvar[:, None]
                        + np.log(2 * np.pi), -1)
  log_p = -0.5 * np.sum(z**2 + np.log(2 * np.pi), -1)
  mc = (log_q - log_p).mean(1)
  se = (log_q - log_p).std(1) / np.sqrt(n)
  assert np.all(np.abs(got - mc) < 4 * se), (got, mc, se)
  assert float(vae.kl_diag_gaussian(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0
  # The reconstruction term of one reparameterized draw, recomputed by hand.
  model = vae.VAE((2, 2, 1), 3, 8, rngs=nnx.Rngs(0))
  x = jnp.asarray(rng.uniform(-1, 1, (5, 2, 2, 1)), jnp.float32)
  key = jax.random.key(3)
  recon, kl = vae.elbo_terms(model, x, key, 0.2)
  m, lv = (np.asarray(t) for t in model.encode(x))
  zz = m + np.exp(0.5 * lv) * np.asarray(jax.random.normal(key, m.shape))
  xhat = np.asarray(model.decode(jnp.asarray(zz, jnp.float32)))
  want = np.sum((np.asarray(x) - xhat).reshape(5, -1) ** 2, -1) / (2 * 0.2**2)
  np.testing.assert_allclose(np.asarray(recon), want, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(kl), np.asarray(vae.kl_diag_gaussian(m, lv)), rtol=1e-5)


@pytest.mark.parametrize("arch,shape", [("mlp", (8, 8, 1)), ("dcgan", (16, 16, 3))])
def test_spectral_norm_top_singular_value_is_one(arch, shape):
  critic = gan.Critic(shape, 8, arch, spectral=True, rngs=nnx.Rngs(0))
  x = jnp.zeros((2,) + shape)
  raw = [np.asarray(layer.layer_instance.kernel[...]).copy() for layer in critic.layers]
  gd, params, stats = nnx.split(critic, nnx.Param, nnx.BatchStat)
  for _ in range(60):                       # power iteration, one step per call
    model = nnx.merge(gd, params, stats, copy=True)
    model(x, update_stats=True)
    stats = nnx.state(model, nnx.BatchStat)
  for w, layer in zip(raw, model.layers):
    normed = np.asarray(layer.layer_instance.kernel[...])   # written in place by the call
    top = np.linalg.svd(normed.reshape(-1, normed.shape[-1]), compute_uv=False)[0]
    assert top == pytest.approx(1.0, abs=2e-3)
    sigma = float(np.asarray(layer.batch_stats[("kernel", "sigma")][...]))
    assert sigma == pytest.approx(np.linalg.svd(w.reshape(-1, w.shape[-1]),
                                                compute_uv=False)[0], rel=2e-3)
  # Without spectral normalization the same layers are not normalized.
  plain = gan.Critic(shape, 8, arch, spectral=False, rngs=nnx.Rngs(0))
  tops = [np.linalg.svd(np.asarray(l.kernel[...]).reshape(-1, l.kernel.shape[-1]),
                        compute_uv=False)[0] for l in plain.layers]
  assert max(abs(t - 1.0) for t in tops) > 0.05


def test_shapes_and_bad_input():
  z = jnp.ones((3, 64))
  for arch, shape in (("mlp", (8, 8, 1)), ("dcgan", (32, 32, 3))):
    g = gan.Generator(shape, 64, 8, arch, rngs=nnx.Rngs(0))
    gd, p = nnx.split(g, nnx.Param)
    x = gan.generate(gd, p, z)
    assert x.shape == (3,) + shape and float(jnp.abs(x).max()) <= 1.0
    assert gan.Critic(shape, 8, arch, rngs=nnx.Rngs(0))(x).shape == (3,)
    with pytest.raises(ValueError, match=r"\[B, latent\]"):
      gan.generate(gd, p, jnp.ones(64))
  model = vae.VAE((8, 8, 1), 64, 16, rngs=nnx.Rngs(0))
  gd, p = nnx.split(model, nnx.Param)
  assert vae.generate(gd, p, z).shape == (3, 8, 8, 1)
  with pytest.raises(ValueError, match="power-of-two"):
    gan.Generator((12, 12, 1), 4, 8, "dcgan", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="unknown GAN architecture"):
    gan.Critic((8, 8, 1), 8, "resnet", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="kind must be one of"):
    gen_train.GenerativeSettings(kind="flow")
  with pytest.raises(ValueError, match="the VAE: 'mlp'"):
    gen_train.GenerativeSettings(kind="vae", arch="dcgan")
  with pytest.raises(ValueError, match="steps"):
    gen_train.GenerativeSettings(steps=0)
  with pytest.raises(ValueError, match=r"\[N >= 2, H, W, C\]"):
    gen_train.train(gen_train.GenerativeSettings(), np.zeros((5, 64)), [0])
  with pytest.raises(ValueError, match="at least 2 seeds"):
    settings_lib.override(gvc.settings("smoke"), {"gen_seeds": (0,)})
  s = settings_lib.override(gvc.settings("smoke"), {"vae": {"latent": 16}})
  with pytest.raises(ValueError, match="latent must equal the data's dimension 64"):
    gvc.check(s, 100, (8, 8, 1))


def test_group_trains_once_then_restores(tmp_path):
  rng = np.random.default_rng(2)
  x = np.tanh(rng.normal(size=(32, 8, 8, 1))).astype(np.float32)
  # The smoke run's SNGAN structure (its compilation is reused by test_smoke_run).
  s = settings_lib.override(gvc.settings("smoke").sngan, {"steps": 10})
  g1 = gen_train.ensure_group(s, x, [0, 1], tmp_path, "sn")
  assert g1.info["steps"] == 10 and np.isfinite(g1.info["final_losses_per_model"]).all()
  g2 = gen_train.ensure_group(s, x, [0, 1], tmp_path, "sn")
  assert g2.workdir == g1.workdir
  for a, b in zip(jax.tree.leaves(g1.params), jax.tree.leaves(g2.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  out = g2.generate(rng.normal(size=(3, 64)))
  assert out.shape == (2, 3, 8, 8, 1)
  assert not np.allclose(out[0], out[1])                 # two seeds, two generators
  with pytest.raises(ValueError, match=r"\[B, 64\]"):
    g2.generate(np.zeros((3, 10)))
  # Other settings are another group (a new directory), trained, not restored.
  g3 = gen_train.ensure_group(settings_lib.override(s, {"lr": 1e-3}), x, [0, 1], tmp_path, "sn")
  assert g3.workdir != g1.workdir
  assert not np.allclose(np.asarray(jax.tree.leaves(g3.params)[0]),
                         np.asarray(jax.tree.leaves(g1.params)[0]))


def _assert_same_states(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_killed_run_resumes_bit_for_bit(tmp_path, monkeypatch):
  rng = np.random.default_rng(5)
  x = np.tanh(rng.normal(size=(24, 8, 8, 1))).astype(np.float32)
  # The smoke SNGAN's structure and chunk (compilations shared with test_smoke_run):
  # generator, critic, spectral-norm statistics and both Adam states.
  s = settings_lib.override(gvc.settings("smoke").sngan, {"steps": 40, "checkpoint_every": 20})
  straight, hist = gen_train.train(s, x, [0, 1])
  assert set(straight) == {"g", "opt_g", "d", "stats", "opt_d"} and hist.shape == (4, 2, 2)
  ckpt = lambda d: sorted(int(p.name) for p in (d / "checkpoints").iterdir() if p.name.isdigit())

  # 1. Killed during its 4th chunk (steps 30..40): the checkpoint of step 20 is kept.
  calls, real = [0], gen_train._chunk_fn

  def dying(*args):
    fn = real(*args)
    def run(*a):
      calls[0] += 1
      if calls[0] == 4:
        raise RuntimeError("killed")
      return fn(*a)
    return run
  monkeypatch.setattr(gen_train, "_chunk_fn", dying)
  with pytest.raises(RuntimeError, match="killed"):
    gen_train.train(s, x, [0, 1], tmp_path / "a")
  assert ckpt(tmp_path / "a") == [20]
  # Ctrl-C in the same chunk: the last finished chunk (step 30) is saved first.
  calls[0] = 0

  def interrupted(*args):
    fn = real(*args)
    def run(*a):
      calls[0] += 1
      if calls[0] == 4:
        raise KeyboardInterrupt
      return fn(*a)
    return run
  monkeypatch.setattr(gen_train, "_chunk_fn", interrupted)
  with pytest.raises(KeyboardInterrupt):
    gen_train.train(s, x, [0, 1], tmp_path / "c")
  assert ckpt(tmp_path / "c") == [20, 30]
  monkeypatch.setattr(gen_train, "_chunk_fn", real)
  for d, chunks in (("a", 2), ("c", 1)):
    resumed, hist = gen_train.train(s, x, [0, 1], tmp_path / d)
    assert hist.shape == (chunks, 2, 2)                   # only the steps left
    _assert_same_states(resumed, straight)
  assert ckpt(tmp_path / "a") == [20, 40] and ckpt(tmp_path / "c") == [20, 30, 40]

  # 2. Trained to step 10 (not a checkpoint multiple: saved at its end), then on to 40.
  part = settings_lib.override(s, {"steps": 10})
  gen_train.train(part, x, [0, 1], tmp_path / "b")
  assert ckpt(tmp_path / "b") == [10]
  resumed, hist = gen_train.train(s, x, [0, 1], tmp_path / "b")
  assert hist.shape == (3, 2, 2)
  _assert_same_states(resumed, straight)
  # A finished run is restored as it is (nothing trained); other models are refused.
  again, hist = gen_train.train(s, x, [0, 1], tmp_path / "b")
  assert hist.shape == (0, 2, 2)
  _assert_same_states(again, straight)
  with pytest.raises(ValueError, match="other models .*settings lr"):
    gen_train.train(settings_lib.override(s, {"lr": 1e-3}), x, [0, 1], tmp_path / "b")
  with pytest.raises(ValueError, match="other models .*seeds"):
    gen_train.train(s, x, [0, 2], tmp_path / "b")
  with pytest.raises(ValueError, match="other models .*images"):
    gen_train.train(s, x[::-1], [0, 1], tmp_path / "b")
  with pytest.raises(ValueError, match="past steps=20"):
    gen_train.train(settings_lib.override(s, {"steps": 20}), x, [0, 1], tmp_path / "b")
  with pytest.raises(ValueError, match="multiple of chunk"):
    settings_lib.override(s, {"checkpoint_every": 15})


def test_group_resumes_and_reads_generator_only_checkpoints(tmp_path, monkeypatch):
  rng = np.random.default_rng(5)
  x = np.tanh(rng.normal(size=(12, 8, 8, 1))).astype(np.float32)
  s = gen_train.GenerativeSettings(kind="sngan", steps=10, width=16, chunk=10)
  # The hash leaves checkpoint_every out: it equals the one of the version without it
  # (the literal was computed by that version), so kept groups are still found.
  assert gen_train.group_hash(s, [0, 1], x) == "ac876ab71d"
  assert gen_train.group_hash(settings_lib.override(s, {"checkpoint_every": 40}), [0, 1],
                              x) == "ac876ab71d"
  # A group killed after its first checkpoint resumes to the straight run's generators.
  s = settings_lib.override(gvc.settings("smoke").vae, {"steps": 20})
  straight, _ = gen_train.train(s, x, [3, 4])
  gen_train.train(settings_lib.override(s, {"steps": 10}), x, [3, 4],
                  tmp_path / f"v-{gen_train.group_hash(s, [3, 4], x)}")
  grp = gen_train.ensure_group(s, x, [3, 4], tmp_path, "v")
  assert grp.info["resumed_from_step"] == 10 and grp.info["steps"] == 20
  _assert_same_states(grp.params, straight["g"])
  # The earlier layout: the generators' leaves only (`p000`, ...), no layout in the
  # metadata, written at the end; restored as finished, nothing trained.
  from repro_jax.networks.training import checkpoint
  old = tmp_path / f"old-{gen_train.group_hash(s, [3, 4], x)}"
  mngr = checkpoint.manager(str(old), keep=1)
  checkpoint.save(mngr, 20, {f"p{i:03d}": np.asarray(a) for i, a in
                             enumerate(jax.tree.leaves(straight["g"]))}, np.arange(12), 12,
                  dict(config={k: v for k, v in settings_lib.to_dict(s).items()
                               if k != "checkpoint_every"},
                       seeds=[3, 4], num_models=2, data_shape=[8, 8, 1]))
  mngr.wait_until_finished()
  mngr.close()
  monkeypatch.setattr(gen_train, "_chunk_fn", lambda *a: pytest.fail("trained"))
  grp = gen_train.ensure_group(s, x, [3, 4], tmp_path, "old")
  _assert_same_states(grp.params, straight["g"])
  assert grp.info["steps"] == 20 and grp.info["final_losses_per_model"] is None
  with pytest.raises(ValueError, match="generators only"):
    gen_train.train(settings_lib.override(s, {"steps": 30}), x, [3, 4], old)


def test_frechet_distance_and_duplicates_against_oracles():
  from scipy import linalg
  rng = np.random.default_rng(3)
  f1, f2 = rng.normal(size=(200, 5)), rng.normal(1.0, 2.0, size=(150, 5)) @ rng.normal(size=(5, 5))
  s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
  want = (np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.trace(s1 + s2)
          - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real)
  assert scores.frechet_distance(f1, f2) == pytest.approx(want, rel=1e-8)
  assert scores.frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-8)
  with pytest.raises(ValueError, match="equal F"):
    scores.frechet_distance(f1, f2[:, :3])
  feats = rng.normal(size=(2, 6, 3))
  feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
  feats[0, 1] = feats[0, 0]                                 # a duplicate pair
  got = scores.duplicate_rate(feats, 0.9)
  want = np.array([[np.mean([feats[k, b] @ feats[k, c] > 0.9 for c in range(6) if c != b])
                    for b in range(6)] for k in range(2)])
  np.testing.assert_allclose(got, want)
  assert got[0, 0] >= 0.2 and got[0, 1] >= 0.2


def test_bootstrap_estimates_against_explicit_resamples():
  from repro_jax.analysis import bootstrap
  rng = np.random.default_rng(4)
  k, b, f = 4, 7, 3
  feats = rng.normal(size=(k, b, f))
  ref = rng.normal(0.5, 1.5, size=(40, f))
  entry_of = np.array([0, 0, 1, 1])
  res = bootstrap.draw(jax.random.key(0), b, entry_of, 30)
  fd = scores.fd_estimates(feats, ref, entry_of, res, 0.9)
  vals = rng.normal(size=(k, b))
  mean = scores.mean_estimates(vals, entry_of, res, 0.9)
  models, noise = np.asarray(res.models).astype(int), np.asarray(res.noise).astype(int)
  for e, members in ((0, [0, 1]), (1, [2, 3])):
    assert fd[e]["value"] == pytest.approx(
        scores.frechet_distance(feats[members].reshape(-1, f), ref, ddof=0), rel=1e-9)
    assert mean[e]["value"] == pytest.approx(vals[members].mean())
    # Each replicate equals the statistic of the rows repeated as drawn.
    want_fd, want_mean = [], []
    for r in range(30):
      rows = [(m, n) for m in members for n in range(b) for _ in range(models[r, m] * noise[r, n])]
      want_fd.append(scores.frechet_distance(np.array([feats[m, n] for m, n in rows]), ref,
                                             ddof=0))
      want_mean.append(np.mean([vals[m, n] for m, n in rows]))
    got_fd = scores.weighted_frechet(feats[members].reshape(-1, f),
                                     (models[:, members, None] * noise[:, None, :]).reshape(30, -1),
                                     ref.mean(0), np.cov(ref, rowvar=False, ddof=0))
    np.testing.assert_allclose(got_fd, want_fd, rtol=2e-3, atol=2e-4)
    assert mean[e]["ci"] == pytest.approx(np.quantile(want_mean, [0.05, 0.95]).tolist())


def test_smoke_run(tmp_path):
  s = settings_lib.override(gvc.settings("smoke"), {"zoo": {"dir": str(tmp_path / "zoo")}})
  m = runner.run_study("gan_vae_control", s, tmp_path / "out")
  for f in ("matrices.png", "samples.png", "band.png", "quality.png", "samples.npz",
            "matrix.npz", "metrics.json", "report.md"):
    assert (tmp_path / "out" / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 3
  assert json.loads((tmp_path / "out" / "metrics.json").read_text())["verdicts"] == m["verdicts"]
  k = len(m["entries"])
  rp, lo, hi = (np.asarray(m["matrix"][n]) for n in ("rp", "rp_lo", "rp_hi"))
  assert rp.shape == (k, k) and np.allclose(rp, rp.T)
  assert np.all((lo <= rp + 1e-6) & (rp <= hi + 1e-6) & (rp >= 0) & (rp <= 1))
  assert len(m["band"]["diagonal"]) == s.band_points
  assert len(m["quality"]["fd"]) == k and m["quality"]["fd_data_halves"] >= 0
