"""Schedules against their textbook definitions (float64 NumPy oracles)."""


import numpy as np
import pytest

from repro_jax.diffusion import schedules

ALL = sorted(schedules.SCHEDULES)


def _t_grid(s, n=9):
  return np.linspace(s.t_min, s.t_max, n)


def test_vp_matches_score_sde_definition(x64):
  s = schedules.get_schedule("vp")
  t = _t_grid(s)
  abar = np.exp(-0.5 * t**2 * (20 - 0.1) - t * 0.1)
  np.testing.assert_allclose(s.scale(t), np.sqrt(abar), rtol=1e-12)
  np.testing.assert_allclose(s.sigma(t), np.sqrt((1 - abar) / abar), rtol=1e-12)
  np.testing.assert_allclose(s.alpha_bar(t), abar, rtol=1e-12)


def test_subvp_definition(x64):
  s = schedules.get_schedule("subvp")
  t = _t_grid(s)
  abar = np.exp(-0.5 * t**2 * (20 - 0.1) - t * 0.1)
  # sub-VP: mean sqrt(ᾱ) x0, std 1 − ᾱ  ⇒  s σ = 1 − ᾱ.
  np.testing.assert_allclose(s.scale(t), np.sqrt(abar), rtol=1e-12)
  np.testing.assert_allclose(s.scale(t) * s.sigma(t), 1 - abar, rtol=1e-10)


def test_ddpm_table_matches_cumprod(x64):
  s = schedules.get_schedule("ddpm")
  betas = np.linspace(1e-4, 0.02, 1000)
  abar = np.cumprod(1 - betas)
  idx = np.array([0, 1, 10, 500, 999])
  np.testing.assert_allclose(s.alpha_bar(idx.astype(float)), abar[idx], rtol=1e-10)
  np.testing.assert_allclose(s.scale(idx.astype(float)), np.sqrt(abar[idx]), rtol=1e-10)


def test_cosine_definition(x64):
  s = schedules.get_schedule("cosine")
  t = _t_grid(s)
  f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
  np.testing.assert_allclose(s.alpha_bar(t), f(t) / f(0), rtol=1e-9)
  assert abs(s.alpha_bar(s.t_max) - 1e-4) < 1e-10


def test_ve_edm_loglinear_definitions(x64):
  ve = schedules.get_schedule("ve", sigma_lo=0.02, sigma_hi=30.0)
  t = _t_grid(ve)
  np.testing.assert_allclose(ve.sigma(t), 0.02 * (30 / 0.02) ** t, rtol=1e-12)
  np.testing.assert_allclose(ve.scale(t), 1.0)
  edm = schedules.get_schedule("edm")
  np.testing.assert_allclose(edm.sigma(np.array([0.5, 3.0])), [0.5, 3.0])
  ll = schedules.get_schedule("log_linear", num_timesteps=11, sigma_lo=0.1, sigma_hi=10.0)
  sig = np.asarray(ll.sigma(np.arange(11.0)))
  ratio = sig[:-1] / sig[1:]
  np.testing.assert_allclose(ratio, ratio[0], rtol=1e-10)   # σ_{i−1} = (1 − β) σ_i
  np.testing.assert_allclose([sig[0], sig[-1]], [0.1, 10.0], rtol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_inverse_and_conversions(name, x64):
  s = schedules.get_schedule(name)
  t = _t_grid(s)
  sig = s.sigma(t)
  assert np.all(np.diff(np.asarray(sig)) > 0), "σ must increase with t"
  np.testing.assert_allclose(s.t_of_sigma(sig), t, rtol=1e-9, atol=1e-9)
  a, b = s.alpha_beta(t)
  np.testing.assert_allclose(a, s.scale(t))
  np.testing.assert_allclose(b / a, sig, rtol=1e-12)
  np.testing.assert_allclose(s.log_snr(t), np.log(a**2 / b**2), rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(s.alpha_bar(t), 1 / (1 + np.asarray(sig) ** 2), rtol=1e-12)


def test_edm_grid_formula():
  sig = schedules.edm_sigmas(5)
  i = np.arange(5)
  ref = (80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
  np.testing.assert_allclose(sig[:-1], ref, rtol=1e-10)
  assert sig[-1] == 0.0


def test_ddim_subsequences():
  ddpm = schedules.get_schedule("ddpm")
  sig_all = np.asarray(ddpm.sigma(np.arange(1000.0)))
  lead = schedules.sigma_grid(ddpm, 10, "leading")
  np.testing.assert_allclose(lead[:-1], sig_all[np.arange(0, 1000, 100)[::-1]], rtol=1e-5)
  trail = schedules.sigma_grid(ddpm, 10, "trailing")
  np.testing.assert_allclose(trail[:-1], sig_all[np.arange(999, 0, -100)], rtol=1e-5)
  # The last step denoises to 0; with final="min" the grid ends at σ_min.
  assert lead[-1] == 0 and schedules.sigma_grid(ddpm, 10, "uniform", final="min")[-1] > 0


def test_log_linear_grid_is_geometric():
  g = schedules.sigma_grid(schedules.get_schedule("edm"), 6, "log_linear", final="min")
  np.testing.assert_allclose(g[1:] / g[:-1], (0.002 / 80) ** (1 / 6), rtol=1e-10)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("spacing", ["uniform", "quadratic", "edm", "logsnr"])
def test_grids_decreasing(name, spacing):
  g = schedules.sigma_grid(schedules.get_schedule(name), 7, spacing)
  assert g.shape == (8,) and np.all(np.diff(g) < 0) and g[-1] == 0


def test_bad_input():
  with pytest.raises(ValueError, match="Unknown schedule 'nope'"):
    schedules.get_schedule("nope")
  with pytest.raises(ValueError, match="no option"):
    schedules.get_schedule("vp", beta=3)
  with pytest.raises(ValueError, match="steps"):
    schedules.sigma_grid(schedules.get_schedule("vp"), 0)
  with pytest.raises(ValueError, match="spacing"):
    schedules.sigma_grid(schedules.get_schedule("vp"), 3, "bogus")
  with pytest.raises(ValueError, match="discrete"):
    schedules.sigma_grid(schedules.get_schedule("vp"), 3, "trailing")
  with pytest.raises(ValueError, match="decreasing"):
    schedules.check_sigma_grid([1.0, 2.0, 0.0])


@pytest.mark.parametrize("name,overrides,match", [
    ("ve", dict(sigma_lo=0.0), "sigma_lo"),
    ("ve", dict(sigma_lo=5.0, sigma_hi=1.0), "sigma_lo < sigma_hi"),
    ("ve", dict(sigma_hi=float("inf")), "sigma_hi"),
    ("ve", dict(t_min=0.8, t_max=0.2), "t_min < t_max"),
    ("vp", dict(t_min=0.5, t_max=0.5), "t_min < t_max"),
    ("vp", dict(t_min=0.0), "t_min"),
    ("vp", dict(beta_min=-0.1), "beta_min"),
    ("vp", dict(beta_min=20.0, beta_max=0.1), "beta_min < beta_max"),
    ("subvp", dict(beta_max=float("nan")), "beta_max"),
    ("cosine", dict(alpha_bar_min=0.0), "alpha_bar_min"),
    ("cosine", dict(offset=-1.0), "offset"),
    ("cosine", dict(t_min=2.0), "t_min < t_max"),
    ("edm", dict(t_min=0.0), "t_min"),
    ("edm", dict(t_min=80.0, t_max=1.0), "t_min < t_max"),
    ("edm", dict(t_max="big"), "t_max"),
    ("ddpm", dict(num_timesteps=0), "num_timesteps"),
    ("ddpm", dict(num_timesteps=1), "num_timesteps"),
    ("ddpm", dict(num_timesteps=10.5), "num_timesteps"),
    ("ddpm", dict(num_timesteps=True), "num_timesteps"),
    ("ddpm", dict(beta_start=0.0), "beta_start"),
    ("ddpm", dict(beta_end=1.0), "beta_end"),
    ("ddpm", dict(beta_start=0.1, beta_end=0.01), "beta_start <= beta_end"),
    ("log_linear", dict(sigma_lo=-1.0), "sigma_lo"),
    ("log_linear", dict(num_timesteps=0), "num_timesteps"),
])
def test_nonsense_schedule_overrides_raise(name, overrides, match):
  with pytest.raises(ValueError, match=match):
    schedules.get_schedule(name, **overrides)


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=True), "`steps`"),
    (dict(steps=3.0), "`steps`"),
    (dict(steps=4, spacing="edm", rho=0.0), "`rho`"),
    (dict(steps=4, spacing="edm", rho=-2.0), "`rho`"),
    (dict(steps=4, spacing="edm", rho=float("nan")), "`rho`"),
])
def test_bad_grid_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    schedules.sigma_grid(schedules.get_schedule("edm"), **kwargs)


def test_leading_offset_grid_values(x64):
  """DDIM's `leading` sub-sequence with `steps_offset = 1` (diffusers):
  t = i·(T // k) + 1 for i = k−1, ..., 0, i.e. 901, 801, ..., 1 for k = 10."""
  ddpm = schedules.get_schedule("ddpm")
  sig_all = np.sqrt((1 - ddpm.alpha_bars()) / ddpm.alpha_bars())
  t = np.array([901, 801, 701, 601, 501, 401, 301, 201, 101, 1])
  g = schedules.sigma_grid(ddpm, 10, "leading_offset")
  np.testing.assert_allclose(g[:-1], sig_all[t], rtol=1e-10)
  assert g[-1] == 0.0
  g = schedules.sigma_grid(ddpm, 4, "leading_offset", final="min")
  np.testing.assert_allclose(g, sig_all[[801, 601, 401, 201, 1]], rtol=1e-10)
