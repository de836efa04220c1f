"""Training configs for `experiments/train.py`.

Variants (`--config=configs/train.py:<variant>`):

- `smoke`: seconds; a tiny U-Net on 64 digits for tests.
- `cpu`: U-Net width 32 (0.7M parameters) on all 1797 8×8 digits, 4000 steps
  of batch 64: ~10 minutes on a 2-core CPU (~0.15 s/step).
- `molrg`: U-Net on the 4×4×3 image view of a MoLRG (K = 2, D = 48, r = 4).
- `paper`: CIFAR-10 32×32, DDPM++-like U-Net of width 128 (the paper's widths
  are 64/128/256: `--config.model.width=64`), ε-prediction on the VP SDE,
  batch 128; for a GPU/TPU.  Needs `--config.data.path=<cifar-10-batches-py>`.

Example:

  python experiments/train.py --config=configs/train.py:cpu --workdir=workdirs/digits \
      --config.data.num_train=256 --config.model.width=32
"""

import ml_collections

VARIANTS = ("smoke", "cpu", "molrg", "paper")


def _base():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = False  # jax.distributed.initialize() for multi-host runs.

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"        # digits | cifar10 | array | molrg | molrg_image
  c.data.path = ""              # cifar10 directory, or .npy/.npz file
  c.data.split = "train"
  c.data.key = ""               # .npz entry
  c.data.value_range = ()       # (lo, hi) of float arrays, scaled to [-1, 1]
  c.data.num_train = -1         # N images, chosen by subset_seed (-1: all)
  c.data.subset_seed = 0
  c.data.molrg = ml_collections.ConfigDict(dict(
      dim=48, num_components=2, rank=4, num_points=4096, seed=0, image_shape=(4, 4, 3)))

  c.model = ml_collections.ConfigDict()
  c.model.name = "unet"         # unet | mlp
  c.model.width = 32            # unet
  c.model.ch_mult = (1, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (4,)
  c.model.norm_groups = 8
  c.model.hidden = 256          # mlp
  c.model.depth = 3
  c.model.emb_dim = 64
  c.model.dropout = 0.0
  c.model.embedding = "sinusoidal"  # sinusoidal | fourier
  c.model.num_classes = 0       # > 0: class-conditional (labels from the data)
  c.model.label_dropout = 0.0   # drop labels to "none" with this probability

  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.parameterization = "eps"  # eps | x0 | edm
  c.diffusion.schedule = "vp"           # repro_jax.schedules registry (eps/x0)
  c.diffusion.time_input = "t"          # t | log_sigma
  c.diffusion.sigma_data = 0.5
  c.diffusion.p_mean = -1.2
  c.diffusion.p_std = 1.2

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"         # adam | adamw
  c.optim.learning_rate = 1e-3
  c.optim.weight_decay = 0.0
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.warmup_steps = 200
  c.optim.grad_clip = 1.0       # global-norm clipping (0: off)

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64       # global batch, split over the devices
  c.train.num_steps = 4000
  c.train.log_every = 100       # steps per jitted lax.scan chunk
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3
  c.train.ema_decay = 0.999
  c.train.num_devices = 0       # data-parallel devices (0: all)
  c.train.step_loop = "auto"    # scan | python | auto (python for the U-Net on CPU)
  return c


def get_config(variant: str = "cpu"):
  c = _base()
  if variant == "smoke":
    c.data.num_train = 64
    c.model.update(width=8, norm_groups=4, ch_mult=(1, 2), attn_resolutions=(4,))
    c.optim.warmup_steps = 5
    c.train.update(batch_size=16, num_steps=20, log_every=10, checkpoint_every=10,
                   keep_checkpoints=2, num_devices=1)
  elif variant == "cpu":
    pass
  elif variant == "molrg":
    c.data.name = "molrg_image"
    c.model.update(width=32, ch_mult=(1, 2), attn_resolutions=(2,))
  elif variant == "paper":
    c.data.update(name="cifar10", num_train=1024)
    c.model.update(width=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                   attn_resolutions=(16,), norm_groups=32, dropout=0.1)
    c.optim.update(learning_rate=2e-4, warmup_steps=5000)
    c.train.update(batch_size=128, num_steps=200_000, log_every=500,
                   checkpoint_every=10_000, ema_decay=0.9999, num_devices=0)
  else:
    raise ValueError(f"Unknown config variant {variant!r}; choose one of {VARIANTS}.")
  return c
