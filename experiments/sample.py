r"""Sample from the closed-form (empirical) denoiser of a data set, or from a
trained network's checkpoint.

    python -m experiments.sample --data data.npy --noise z.npy \
        --sigmas 80,10,1,0.1,0 --sampler heun --out results/sample/samples.npz

    python -m experiments.sample --data digits.npz --num_samples 64 --seed 0 \
        --schedule ddpm --steps 20 --spacing trailing --sampler ddim --eta 0 \
        --out results/sample/ddim.npz --trajectory

    python -m experiments.sample --checkpoint workdirs/digits --num_samples 64 \
        --sampler heun --out results/sample/unet.npz

Writes `--out` (.npz: `samples [B, ...]`, `noise`, `sigmas`, `meta`, and with
`--trajectory` `xs [T+1, B, ...]`, `x0_hats [T, B, ...]`), atomically, and a PNG
grid beside it for image data (`--data` of ndim ≥ 3) or when `--png` is given.
All the work is `repro_jax.samplers.sample_to_files`.
"""

import os

from absl import flags

from experiments import _cli

_DATA = flags.DEFINE_string("data", None, "Training set [N, ...] (.npy, or .npz with "
                            "key data/x/images or a single array); the empirical denoiser "
                            "over it is sampled.  Exactly one of --data / --checkpoint.")
_CKPT = flags.DEFINE_string("checkpoint", None, "A training workdir (python -m experiments.train): "
                            "sample its latest checkpoint instead of the empirical denoiser.")
_MODEL = flags.DEFINE_integer("model_index", None, "Model of a many-model checkpoint.")
_EMA = flags.DEFINE_bool("ema", True, "Use the EMA parameters of --checkpoint.")
_NOISE = flags.DEFINE_string("noise", None, "Standard-normal z [B, ...] (.npy); sampling "
                             "starts at x = sigma_max * z. Default: draw from --seed.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise (without --noise) and of "
                             "stochastic samplers.")
_NUM = flags.DEFINE_integer("num_samples", None, "B when --noise is not given (default 16).")
_SIGMAS = flags.DEFINE_string("sigmas", None, "Explicit comma-separated strictly decreasing "
                              "sigma grid (VE), used as given instead of --schedule/--steps.")
_SCHEDULE = flags.DEFINE_string("schedule", "edm", "Schedule name for the grid "
                                "(edm, ddpm, vp, ve, cosine, subvp, log_linear).")
_STEPS = flags.DEFINE_integer("steps", 18, "Number of steps of the grid.")
_SPACING = flags.DEFINE_string("spacing", None, "Grid spacing (edm, uniform, quadratic, "
                               "leading, leading_offset, trailing, logsnr, log_linear); "
                               "default: the schedule's usual one.")
_FINAL = flags.DEFINE_enum("final", "zero", ["zero", "min"], "Last step: denoise to "
                           "sigma = 0 (zero) or stop at sigma_min (min).")
_SAMPLER = flags.DEFINE_string("sampler", "ddim", "Sampler (ddim, sigma_form, ddpm, "
                               "gradient_estimation, euler, heun, dpm_solver, "
                               "dpm_solver_pp_2m).")
_GAMMA = flags.DEFINE_float("gamma", None, "gamma of the sigma-form samplers "
                            "(gradient_estimation default 2).")
_ETA = flags.DEFINE_float("eta", None, "eta of ddim (0 deterministic, 1 DDPM).")
_MU = flags.DEFINE_float("mu", None, "mu of the sigma-form samplers (0 deterministic, "
                         "0.5 DDPM).")
_ORDER = flags.DEFINE_integer("order", None, "Order of dpm_solver (1-3).")
_CHURN = flags.DEFINE_float("churn", None, "S_churn of euler/heun.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Samples per compiled batch.")
_OUT = flags.DEFINE_string("out", None, "Output .npz.", required=True)
_TRAJ = flags.DEFINE_bool("trajectory", False, "Also store xs and x0_hats.")
_PNG = flags.DEFINE_string("png", None, "PNG path for a picture of the samples "
                           "(default: beside --out, for image data only).")


def main(argv):
  if len(argv) > 1:
    _cli.fail(f"unexpected arguments {argv[1:]}.")
  _cli.check_writable_dir(os.path.dirname(os.path.abspath(_OUT.value)), "out", _OUT.value)
  from repro_jax import samplers  # after flag parsing: jax starts here
  try:
    samplers.sample_to_files(
        _DATA.value, _OUT.value, noise=_NOISE.value, trajectory=_TRAJ.value,
        png=_PNG.value, checkpoint=_CKPT.value, model_index=_MODEL.value,
        use_ema=_EMA.value, seed=_SEED.value, num_samples=_NUM.value,
        sigmas=_SIGMAS.value, schedule=_SCHEDULE.value, steps=_STEPS.value,
        spacing=_SPACING.value, final=_FINAL.value, sampler=_SAMPLER.value,
        batch_size=_BATCH.value, gamma=_GAMMA.value, eta=_ETA.value, mu=_MU.value,
        order=_ORDER.value, churn=_CHURN.value)
  except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
    _cli.fail(str(e))
  print(f"wrote {os.path.abspath(_OUT.value)}")


if __name__ == "__main__":
  _cli.run(main)
