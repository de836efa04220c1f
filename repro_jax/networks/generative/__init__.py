"""Small GANs and VAEs: the negative control of the reproducibility paper (§2.2.3).

- `gan`: generators and critics (an MLP for 8×8 digits, a DCGAN for 32×32),
  the WGAN-GP gradient penalty and the hinge loss of the spectrally normalized
  GAN (`nnx.SpectralNorm`);
- `vae`: a Gaussian VAE and its ELBO terms;
- `train`: every seed of one variant trained in one vmapped program (the loop
  in `lax.scan`), kept as an orbax checkpoint under a hash of its settings and
  restored instead of retrained.

Import the submodules directly (`from repro_jax.networks.generative import gan`).
Images are `[B, H, W, C]` in `[−1, 1]`; latents `z [B, L]` are standard normal.
"""
