"""The GAN/VAE negative control.  See configs/gan_vae_control.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("gan_vae_control")
