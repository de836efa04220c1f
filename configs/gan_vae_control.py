"""The GAN/VAE negative control (reproducibility paper §2.2.3, Fig. 5).

Run:
  python -m experiments.gan_vae_control --config=configs/gan_vae_control.py:cpu \
      --workdir=results/gan_vae_control

Variants:
- `cpu` (default): on the 8×8 digits, a WGAN-GP, an SNGAN (spectral norm) and
  two VAEs (β = 1, 0.25), 3 seeds each, latent 64 = 8·8·1, fed the same 512
  noises as the zoo's MLP-EDM and DiT-EDM diffusion models at N = 1797
  (restored); RP matrices with the learned descriptor, sample quality.
- `smoke` (seconds, tests): tiny models, 16 noises.
- `paper`: CIFAR-10, DCGAN-size GANs and wide VAEs (latent 3072), against the
  cross-model matrix's U-Net and DiT; needs
  `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator.

GAN/VAE groups and the diffusion zoo live in `zoo.dir` (git-ignored
`workdirs/`), restored on a rerun.  Fields and criteria:
`repro_jax.studies.gan_vae_control.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import gan_vae_control


def get_config(variant: str = "cpu"):
  return settings.to_config(gan_vae_control.settings(variant))
