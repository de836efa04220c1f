"""Shape inference of a registered model without allocating or compiling it."""

import math

import jax
import jax.numpy as jnp

from repro_jax.networks import models


def abstract_run(name, shape, batch, **opts):
  """`(parameter count, output shape)` of model `name` on `[batch, *shape]`."""
  graphdef, shapes = models.abstract(name, shape, **opts)
  leaves = jax.tree.leaves(shapes)
  assert all(isinstance(s, jax.ShapeDtypeStruct) for s in leaves)
  out = jax.eval_shape(lambda p, x, c: models.apply(graphdef, p, x, c, None,
                                                    jax.random.key(0)),
                       shapes, jax.ShapeDtypeStruct((batch,) + tuple(shape), jnp.float32),
                       jax.ShapeDtypeStruct((batch,), jnp.float32))
  return sum(math.prod(s.shape) for s in leaves), out.shape


def check_labels_and_dropout(graphdef, params, shape=(8, 8, 1)):
  """Class labels (and "none", −1) change the output; dropout acts with a key
  and is deterministic without one (params perturbed away from the zero init)."""
  import numpy as np
  x, c = jnp.ones((2,) + tuple(shape)), jnp.full((2,), 100.0)
  f = jax.jit(lambda l, k: models.apply(graphdef, params, x, c, l, k))
  y0 = f(jnp.array([0, 0]), None)
  assert float(jnp.max(jnp.abs(y0 - f(jnp.array([3, 3]), None)))) > 1e-4
  assert float(jnp.max(jnp.abs(y0 - f(jnp.array([-1, -1]), None)))) > 1e-4
  np.testing.assert_array_equal(y0, f(jnp.array([0, 0]), None))
  assert float(jnp.max(jnp.abs(y0 - f(jnp.array([0, 0]), jax.random.key(0))))) > 1e-4
