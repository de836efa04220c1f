"""The paper variant of every study, end to end on CPU at tiny size.

Each study runs its `paper` settings (CIFAR-10 where the paper uses it, the
paper's architectures and samplers) with the sizes and step counts overridden
to tiny values, on synthetic data in the real `cifar-10-batches-py` format,
through the same runner as `experiments.reproduce --variant=paper
--cifar10=PATH`.  What is checked is the wiring (data paths, configs,
shapes, the results files), not the verdicts: at this size they mean nothing.
"""

import gc
import json

import jax
import pytest

from repro_jax import settings as settings_lib
from repro_jax.studies import STUDIES
from repro_jax.studies import runner


_TINY_TRAIN = dict(log_every=1, checkpoint_every=2, num_steps=2)
_TINY_ZOO = dict(
    widths=(8, 16), sizes=(4, 8), seeds=(0, 1),
    train=dict(model=dict(width=8, ch_mult=(1, 2), num_res_blocks=1, norm_groups=4,
                          emb_dim=8),
               optim=dict(warmup_steps=1), train=dict(batch_size=4, **_TINY_TRAIN)))
_TINY_ZOO_STUDY = dict(num_noises=4, chunk=4, calib_pairs=8,
                       descriptor=dict(width=4, dim=8, steps=2, batch=8, warmup=0, chunk=2))

# The low-dim studies' networks, tiny: an MLP on the CIFAR-10 images (their
# wiring is tested here; the U-Net's Jacobians are tested in test_jacobian.py).
_TINY_MEMBERS = (("MLP", "mlp", 8, "eps"),)
# The MoLRG networks of jacobian_rank and loco_edit, tiny.
_TINY_MOLRG = dict(widths=(8,), sizes=(4, 8), seeds=(0,),
                   train=dict(data=dict(molrg=dict(dim=12, rank=2, num_points=64)),
                              model=dict(emb_dim=8), optim=dict(warmup_steps=1),
                              train=dict(batch_size=4, **_TINY_TRAIN)))

# The paper settings with every size and step count made tiny.
TINY = {
    "theory_checks": dict(num_data=64, batch=4, chunk=32, num_sigmas=3, mc_samples=4000),
    "pca_equivalence": dict(dim=12, ranks=(1, 2), ns=(1, 2, 3), num_seeds=1, curve_ranks=(2,),
                            train=dict(steps=5), variant_ranks=(2,), variant_ns=(1, 3),
                            mc_steps=5, noise_levels=(0.05,), noise_rank=2, noise_ns=(2, 8),
                            noise_num_seeds=2, bootstrap_resamples=20),
    "subspace_clustering": dict(ks=(2,), dims=(12,), ranks=(1, 2), ns=(1, 2, 3), num_seeds=1,
                                train=dict(steps=5, restarts=1, noise_per_point=2),
                                random_ns=(2,), random_restarts=2, kss_iters=2,
                                kss_restarts=1, hard_rank=1, hard_ns=(2, 4), hard_seeds=2,
                                noise_dims=(12,), noises=(0.0, 0.05), angles=(90.0, 45.0),
                                size_ratios=(1, 2), bootstrap_resamples=20),
    "molrg_networks": dict(
        dim=12, image_shape=(2, 2, 3), ranks=(2, 3), ns=(2, 8), bootstrap_resamples=20,
        mlp=dict(model=dict(hidden=16, emb_dim=8), train=dict(batch_size=4, **_TINY_TRAIN),
                 num_seeds=1),
        unet=dict(model=dict(width=8, emb_dim=8), train=dict(batch_size=4, **_TINY_TRAIN),
                  num_seeds=1),
        dit=dict(model=dict(width=8, depth=1, num_heads=2, patch_size=1, emb_dim=8),
                 train=dict(batch_size=4, **_TINY_TRAIN), num_seeds=1),
        eval=dict(num_samples=8, steps=3, score_samples=16, score_sigmas=2)),
    "memorization_theory": dict(
        num_train=16, random_dim=16, cifar10_num_train=16, num_noises=4, steps=(2, 4),
        table_steps=4, ref_steps=8, round_trip_num=4, round_trip_steps=(2, 4), plane_grid=3,
        plane_steps=(2, 4), plane_candidates=4),
    "optimization_view": dict(
        molrg_dim=12, molrg_components=2, molrg_rank=2, finite_num_train=32, traj_num=8,
        traj_steps=(10,), traj_main_steps=10, identity_num=4, num_samples=64, num_seeds=1,
        nfe=(5,), sw_projections=16, gammas=(1.0, 2.0), gamma_steps=(5,), gamma_num=8,
        zoo=_TINY_ZOO, digits_members=_TINY_MEMBERS, digits_sizes=(4, 8), digits_seeds=(0,),
        molrg=_TINY_MOLRG, descriptor=_TINY_ZOO_STUDY["descriptor"], trained_traj_num=4,
        trained_traj_steps=(3,), trained_num_samples=8, bootstrap_resamples=20,
        samplers=("sigma_form", "gradient_estimation"),
        trained_samplers=("sigma_form", "gradient_estimation"),
        schedule_spacings=("log_linear", "leading")),
    "reproducibility_regimes": dict(zoo=_TINY_ZOO, plane_grid=3, plane_size_index=0,
                                    grid_columns=2, steps=3, **_TINY_ZOO_STUDY),
    "reproducibility_across_samplers": dict(
        zoo=_TINY_ZOO, samplers=(("DDIM", "ddim", 3), ("Heun", "heun", 2)),
        **_TINY_ZOO_STUDY),
    "reproducibility_across_models": dict(
        zoo=_TINY_ZOO, members=(("U-Net", "unet", 8, "eps", "vp"), ("DiT", "dit", 8, "edm", "vp")),
        matrix_sizes=(4, 8), matrix_seeds=(0, 1), halves_sizes=(4,), halves_seeds=(0,),
        samplers=(("Heun", "heun", 2),), bootstrap_resamples=20, halves_member=1,
        convergence_members=(0, 1),
        convergence_size=4, convergence_steps=(1, 2), onset_sizes=(4,), **_TINY_ZOO_STUDY),
    "jacobian_rank": dict(
        zoo=_TINY_ZOO, digits_members=_TINY_MEMBERS, digits_sizes=(4, 8),
        digits_seeds=(0,), ts=(0.02, 0.7), mid_ts=(0.7,),
        num_points=2, topk=4, check_k=2, chunk=2, bootstrap_resamples=20,
        molrg=_TINY_MOLRG),
    "loco_edit": dict(
        zoo=_TINY_ZOO, digits_members=_TINY_MEMBERS, digits_sizes=(4, 8),
        digits_seeds=(0,), num_images=2, steps=3, k=2, null_k=2, topk=3, figure_images=1,
        bootstrap_resamples=20, molrg_region=4, molrg_null_k=2,
        molrg=_TINY_MOLRG),
    "watermark": dict(
        zoo=_TINY_ZOO, digits_members=_TINY_MEMBERS, digits_sizes=(4, 8),
        digits_seeds=(0,), num_images=2, steps=3, range_k=4, bootstrap_resamples=20),
    "ddim_table": dict(
        zoo=_TINY_ZOO, digits_members=_TINY_MEMBERS, digits_sizes=(4, 8), digits_seeds=(0,),
        molrg=_TINY_MOLRG, descriptor=_TINY_ZOO_STUDY["descriptor"], num_samples=8,
        etas=(0.0, 1.0), steps=(2, 4), few_steps=(2,), consistency_steps=(2,),
        consistency_from=2, interp_pairs=2, interp_points=3, interp_steps=2,
        sw_projections=8, bootstrap_resamples=20),
    "closed_form_atlas": dict(
        zoo=_TINY_ZOO, map_width=8, digits_members=_TINY_MEMBERS, digits_sizes=(4, 8),
        digits_seeds=(0, 1), molrg=_TINY_MOLRG, steps=2, num_inputs=4, traj_noises=2,
        molrg_inputs=4, molrg_traj_noises=2, linear_fit_points=8, windows=(3,),
        smoothings=(0.1,), final_noises=2, calib_pairs=8,
        descriptor=_TINY_ZOO_STUDY["descriptor"], bootstrap_resamples=20),
    "inverse_problems": dict(
        zoo=_TINY_ZOO, digits_members=_TINY_MEMBERS, digits_sizes=(4, 8), digits_seeds=(0, 1),
        num_pairs=4, steps=2, chunk=4, calib_pairs=8, xi_grid=(0.3, 1.0), xi_pairs=4,
        bootstrap_resamples=20),
    "conditional_models": dict(
        zoo=_TINY_ZOO, members=(("U-Net EDM", "unet", 8, "edm"), ("DiT EDM", "dit", 8, "edm")),
        memorization_members=("U-Net EDM",), uncond_members=(("U-Net EDM", "unet", 8, "edm"),),
        sizes=(4, 8), uncond_sizes=(4, 8), seeds=(0, 1), steps=2, guidance_scales=(0.0, 1.0),
        band_points=2, grid_noises=1, bootstrap_resamples=20, **_TINY_ZOO_STUDY),
    "fine_tuning": dict(zoo=_TINY_ZOO, pretrain_steps=2, sampler=("Heun", "heun", 2),
                        bootstrap_resamples=20, examples=2, **_TINY_ZOO_STUDY),
    "gan_vae_control": dict(
        zoo=_TINY_ZOO, wgan_gp=dict(width=4, steps=2, chunk=2, batch=4, n_critic=1),
        sngan=dict(width=4, steps=2, chunk=2, batch=4, n_critic=1),
        vae=dict(width=4, steps=2, chunk=2, batch=4),
        vae_weak=dict(width=4, steps=2, chunk=2, batch=4), gen_seeds=(0, 1),
        diffusion_members=(("U-Net", "unet", 8, "eps"), ("DiT", "dit", 8, "eps")),
        diffusion_sizes=(4, 8), steps=2, num_shown=2, bootstrap_resamples=20,
        **_TINY_ZOO_STUDY),
}


def test_every_study_has_a_tiny_paper_override():
  assert set(TINY) == set(STUDIES)


def test_paper_without_cifar10_stops_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="--cifar10=PATH"):
    runner.run_studies(list(STUDIES), variant="paper", results_dir=tmp_path / "r")
  assert not (tmp_path / "r").exists()
  with pytest.raises(ValueError, match="no such directory"):
    runner.run_studies(["memorization_theory"], variant="paper", results_dir=tmp_path / "r",
                       data={"cifar10": str(tmp_path / "nowhere")})


# The two zoo studies share their trained models, so they run in this file
# (one test worker); the others run in test_paper_wiring_others.py and _rest.py.
ZOO_STUDIES = ("reproducibility_regimes", "reproducibility_across_samplers")


@pytest.mark.parametrize("name", ZOO_STUDIES)
def test_tiny_paper_run(name, cifar10, tmp_path_factory):
  tiny_paper_run(name, cifar10, tmp_path_factory)


def tiny_paper_run(name, cifar10, tmp_path_factory):
  """Run study `name`'s paper settings made tiny; check the files and the wiring."""
  zoo_dir = tmp_path_factory.getbasetemp() / "paper_zoo"     # shared by the zoo studies
  changes = dict(TINY[name])
  if "zoo" in changes:
    changes["zoo"] = dict(changes["zoo"], dir=str(zoo_dir))
  paper = runner.study_settings(name, "paper", {"cifar10": str(cifar10)})
  tiny = settings_lib.override(paper, changes, where=name)
  out = tmp_path_factory.mktemp("paper") / name
  try:
    metrics = runner.run_study(name, tiny, out, variant="paper")
  finally:
    # One worker runs many studies in a row: drop their compiled programs (GBs).
    jax.clear_caches()
    gc.collect()
  assert metrics["verdicts"], name
  for f in ("metrics.json", "report.md", "config.json", "manifest.json"):
    assert (out / f).stat().st_size > 0, (name, f)
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["variant"] == "paper"
  recorded = json.loads((out / "config.json").read_text())
  if name == "memorization_theory":
    assert recorded["cifar10_dir"] == str(cifar10) and "cifar10" in recorded["datasets"]
  if name.startswith("reproducibility_"):
    assert recorded["zoo"]["train"]["data"]["name"] == "cifar10"
    assert recorded["zoo"]["train"]["model"]["name"] == "unet"
