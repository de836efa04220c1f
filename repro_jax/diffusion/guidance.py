"""Class-conditional denoisers and classifier-free guidance, as canonical denoisers.

A class-conditional network `net(x, c, labels)` (`models` with `num_classes >
0`, trained with `label_dropout > 0`; label −1 is the null label ∅) becomes
an ordinary canonical `Denoiser` once its labels are fixed, so every sampler
(and every metric that takes a denoiser) runs it unchanged:

    den = conditional(trainer, params, labels)          # D(x, σ, c), labels [B]
    den_w = guided(trainer, params, labels, w)          # D_w(x, σ, c)
    samplers.sample_batched(den_w, z, sigmas, sampler="heun")

Classifier-free guidance (Ho & Salimans, 2022; docs/theory.md §6.3):

    D_w(x, σ, c) = D(x, σ, ∅) + w · (D(x, σ, c) − D(x, σ, ∅))
                 = (1 − w) · D(x, σ, ∅) + w · D(x, σ, c)

computed in the second form, so that `w = 0` returns the null-label denoiser
and `w = 1` the conditional one exactly (bit for bit, for finite outputs).
`w` is a scalar or one weight per row, so one sampler call (one compilation)
runs a whole sweep of guidance scales.

Labels and weights are *per row*, fixed when the denoiser is built: `[B]`
for B rows of one model, or for a stack of M models (`num_models = M`, a
model-major batch `[M·B, ...]`) either `[B]` (the same labels for every
model: row b of each model's block gets `labels[b]`) or `[M·B]` (one per row
of the whole batch).  A sampler must therefore see all the B rows at once
(`samplers.sample_batched(..., batch_size=None)`).

`class_empirical(data, data_labels, labels)` is the class-conditional
memorizing closed form: row b's posterior mean under the empirical
distribution of the training images labelled `labels[b]` (−1: all of them),
ε* of that class (reproducibility paper Theorem 1 per class).

Noise convention: VE, `x = x0 + σ ε`; images `[B, H, W, C]` (or any `[B, ...]`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax.diffusion import denoiser as denoiser_lib

NULL_LABEL = -1


def _row_values(values, rows: int, num_models: int, name: str):
  """Per-row values `[rows]` from `values` of shape `[]`, `[rows / M]` or `[rows]`.

  Shapes are static under tracing, so a mismatch raises here (a sampler
  reports it as a denoiser that cannot take its input)."""
  values = jnp.asarray(values)
  if values.ndim == 0:
    return jnp.broadcast_to(values, (rows,))
  if values.ndim != 1:
    raise ValueError(f"`{name}` must be a scalar or 1-D per row; got shape {values.shape}.")
  n = values.shape[0]
  if n == rows:
    return values
  if num_models > 1 and n * num_models == rows:       # the same rows for every model
    return jnp.tile(values, num_models)
  raise ValueError(f"`{name}` has {n} entries for a batch of {rows} rows"
                   + (f" ({num_models} models × {rows // num_models})" if num_models > 1
                      else "") + "; give one per row of one model or of the whole batch.")


def _check_labels(labels, num_classes: int) -> np.ndarray | None:
  if labels is None:
    return None
  lab = np.asarray(labels)
  if lab.dtype.kind not in "iu":
    raise ValueError(f"`labels` must be integers; got dtype {lab.dtype}.")
  if lab.size and (lab.min() < NULL_LABEL or lab.max() >= num_classes):
    raise ValueError(f"`labels` must lie in [{NULL_LABEL}, {num_classes}) (−1: the null "
                     f"label); got values in [{lab.min()}, {lab.max()}].")
  return lab.astype(np.int32)


def conditional(trainer, params, labels=None) -> denoiser_lib.Denoiser:
  """The canonical denoiser `D(x, σ, c)` of class-conditional network(s).

  Args:
    trainer: the static `training.Trainer` of the group (`num_classes > 0`).
    params: flat parameters `[P]` (one model) or `[M, P]` (a stack of M
      models, run on a model-major batch `[M·B, ...]`).
    labels: int labels per row (see the module docstring), a scalar for
      every row, or None (every row the null label ∅).

  Returns:
    A `Denoiser` named "network" (`num_models = M` for a stack).
  """
  from repro_jax.networks.training import step as step_lib   # the training stack when asked
  if int(trainer.num_classes) < 1:
    raise ValueError("conditional() needs a class-conditional trainer (model.num_classes > "
                     "0); this one is unconditional.")
  lab = _check_labels(NULL_LABEL if labels is None else labels, int(trainer.num_classes))
  params = jnp.asarray(params)
  if params.ndim == 1:
    m = 1
  elif params.ndim == 2:
    m = int(params.shape[0])
  else:
    raise ValueError(f"`params` must be [P] or [M, P]; got shape {params.shape}.")
  stacked_params = params if params.ndim == 2 else params[None]

  def net(x, c):
    rows = x.shape[0]
    if rows % m:
      raise ValueError(f"a stack of {m} models needs a batch of M·B rows; got {rows}.")
    row_lab = _row_values(lab, rows, m, "labels").reshape(m, -1)
    xs = x.reshape((m, -1) + x.shape[1:])
    cs = jnp.broadcast_to(jnp.asarray(c), (rows,)).reshape(m, -1)
    out = jax.vmap(lambda p, xm, cm, lm: step_lib.net_fn(trainer, p, lm)(xm, cm))(
        stacked_params, xs, cs, row_lab)
    return out.reshape(x.shape)

  # The parameterization's wrap acts row by row, so wrapping the stacked
  # network once is each model wrapped on its own (as `denoiser.stack`).
  return denoiser_lib.Denoiser(trainer.param.denoiser(net), "network",
                               tuple(trainer.data_shape), m if params.ndim == 2 else None)


def classifier_free(cond: denoiser_lib.Denoiser, null: denoiser_lib.Denoiser,
                    w) -> denoiser_lib.Denoiser:
  """Classifier-free guidance `(1 − w) D(x, σ, ∅) + w D(x, σ, c)` as a `Denoiser`.

  Args:
    cond, null: the conditional and the null-label denoisers of the same
      model(s) (same `num_models` and `data_shape`).
    w: the guidance scale, a scalar or one per row (`[B]` per model or `[M·B]`).
  """
  cond, null = denoiser_lib.as_denoiser(cond), denoiser_lib.as_denoiser(null)
  if cond.num_models != null.num_models:
    raise ValueError(f"cond and null must stack the same models; got num_models "
                     f"{cond.num_models} and {null.num_models}.")
  if None not in (cond.data_shape, null.data_shape) and cond.data_shape != null.data_shape:
    raise ValueError(f"cond and null must share data_shape; got {cond.data_shape} and "
                     f"{null.data_shape}.")
  w_arr = np.asarray(w, np.float32)
  if w_arr.ndim > 1 or not np.all(np.isfinite(w_arr)):
    raise ValueError(f"`w` must be a finite scalar or 1-D per row; got {w!r}.")
  m = cond.num_models or 1

  def fn(x, sigma):
    wr = _row_values(w_arr, x.shape[0], m, "w").astype(x.dtype)
    wr = wr.reshape((-1,) + (1,) * (x.ndim - 1))
    return (1.0 - wr) * null(x, sigma) + wr * cond(x, sigma)

  return denoiser_lib.Denoiser(fn, "guided", cond.data_shape or null.data_shape,
                               cond.num_models, dict(cond.info))


def guided(trainer, params, labels, w) -> denoiser_lib.Denoiser:
  """`classifier_free(conditional(trainer, params, labels), conditional(..., ∅), w)`."""
  return classifier_free(conditional(trainer, params, labels),
                         conditional(trainer, params, None), w)


def class_empirical(data, data_labels, labels, *, chunk_size: int | None = None
                    ) -> denoiser_lib.Denoiser:
  """The class-conditional empirical denoiser: ε* of each row's class.

  Row b is denoised under the empirical distribution of the rows of `data`
  labelled `labels[b]` (`NULL_LABEL`: every row of `data`): each class's
  memorizing posterior mean (`denoiser.empirical` on that class) computed
  on every query, then picked per row, so the work is one pass over the data
  per query (plus one more if some rows are null).

  Args:
    data: training images `[N, ...]`.
    data_labels: their int labels `[N]`.
    labels: int labels per row of the queries `[B]` (a scalar: every row).
    chunk_size: rows of a class per streaming block (`denoiser.empirical`).
  """
  data = np.asarray(data)
  dl = np.asarray(data_labels)
  if dl.shape != data.shape[:1] or dl.dtype.kind not in "iu":
    raise ValueError(f"`data_labels` must be integers of shape [N] = {data.shape[:1]}; got "
                     f"{dl.shape} ({dl.dtype}).")
  lab = np.asarray(labels)
  if lab.dtype.kind not in "iu" or lab.ndim > 1:
    raise ValueError(f"`labels` must be integers, a scalar or [B]; got {lab.shape} "
                     f"({lab.dtype}).")
  wanted = sorted(int(c) for c in np.unique(lab))
  missing = [c for c in wanted if c != NULL_LABEL and not np.any(dl == c)]
  if missing:
    raise ValueError(f"no training image has label(s) {missing}: their class-conditional "
                     "empirical denoiser is undefined.")
  parts = {c: denoiser_lib.empirical(data if c == NULL_LABEL else data[dl == c],
                                     chunk_size=chunk_size) for c in wanted}
  lab_j = jnp.asarray(lab, jnp.int32)

  def fn(x, sigma):
    row = _row_values(lab_j, x.shape[0], 1, "labels").reshape((-1,) + (1,) * (x.ndim - 1))
    out = jnp.zeros_like(x)
    for c, den in parts.items():
      out = jnp.where(row == c, den(x, sigma), out)
    return out

  return denoiser_lib.Denoiser(fn, "class_empirical", tuple(data.shape[1:]))
