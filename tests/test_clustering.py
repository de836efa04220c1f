"""K-subspaces, subspace distances and label accuracy against NumPy oracles."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax.lowrank import clustering


def _orth(rng, d, r):
  return np.linalg.qr(rng.normal(size=(d, r)))[0]


def _union_of_subspaces(seed, k, d, r, n, pad):
  """n points in each of k mutually orthogonal r-dim subspaces, then `pad`
  masked rows.  → (x [k n + pad, D], mask, rank_mask [R], truth [K, D, R], labels)."""
  rng = np.random.default_rng(seed)
  q = _orth(rng, d, k * r)
  truth = np.stack([q[:, i * r:(i + 1) * r] for i in range(k)])
  x = np.concatenate([rng.normal(size=(n, r)) @ b.T for b in truth] + [np.zeros((pad, d))])
  labels = np.concatenate([np.full(n, i) for i in range(k)] + [np.zeros(pad, int)])
  mask = np.concatenate([np.ones(k * n), np.zeros(pad)])
  return (jnp.asarray(x, jnp.float32), jnp.asarray(mask, jnp.float32), jnp.ones((r,)),
          jnp.asarray(truth, jnp.float32), jnp.asarray(labels))


def test_projection_distance_matches_numpy_and_resolves_small_angles(x64):
  rng = np.random.default_rng(0)
  u, v = _orth(rng, 9, 3), _orth(rng, 9, 3)
  ref = np.linalg.norm(u @ u.T - v @ v.T)
  np.testing.assert_allclose(clustering.projection_distance(u, v), ref, rtol=1e-12)
  # Rotate one direction by θ = 1e-4: ‖P − Q‖_F = sqrt(2) sin θ, visible in float32.
  theta = 1e-4
  w = u.copy()
  perp = rng.normal(size=9)
  perp -= u @ (u.T @ perp)
  perp /= np.linalg.norm(perp)
  w[:, 0] = np.cos(theta) * u[:, 0] + np.sin(theta) * perp
  d32 = float(clustering.projection_distance(jnp.asarray(u, jnp.float32),
                                             jnp.asarray(w, jnp.float32)))
  np.testing.assert_allclose(d32, np.sqrt(2) * np.sin(theta), rtol=0.05)


def test_matched_distances_find_the_permutation():
  rng = np.random.default_rng(1)
  bases = np.stack([_orth(rng, 10, 2) for _ in range(3)])
  perm = [2, 0, 1]
  dist, found = clustering.matched_distances(bases, bases[perm])
  np.testing.assert_allclose(dist, 0, atol=1e-6)
  # bases[k] is reference[found[k]].
  np.testing.assert_array_equal(np.asarray(perm)[np.asarray(found)], [0, 1, 2])
  assert float(clustering.max_matched_distance(bases, bases[::-1])) < 1e-6


def test_label_accuracy_under_relabelling():
  labels = jnp.array([0, 0, 1, 1, 2, 2, 2, 0])
  pred = jnp.array([2, 2, 0, 0, 1, 1, 1, 1])      # a relabelling, one mistake
  mask = jnp.ones(8)
  assert float(clustering.label_accuracy(pred, labels, mask, 3)) == 7 / 8
  assert float(clustering.label_accuracy(pred, labels, mask.at[7].set(0), 3)) == 1.0
  # Brute-force oracle on random labels.
  rng = np.random.default_rng(2)
  lab, pr = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
  best = max(np.mean(np.asarray(p)[pr] == lab) for p in itertools.permutations(range(3)))
  np.testing.assert_allclose(clustering.label_accuracy(jnp.asarray(pr), jnp.asarray(lab),
                                                       jnp.ones(30), 3), best, rtol=1e-6)


def test_objective_and_assignment_match_numpy():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(12, 6))
  bases = np.stack([_orth(rng, 6, 2), _orth(rng, 6, 2)])
  e = np.stack([np.sum((x @ b) ** 2, 1) for b in bases], 1)
  np.testing.assert_array_equal(clustering.assign(x, bases), e.argmax(1))
  mask = np.ones(12)
  mask[3] = 0
  ref = np.sum(e.max(1) * mask) / mask.sum()
  np.testing.assert_allclose(clustering.clustering_objective(x, mask, bases), ref, rtol=1e-6)


def test_k_subspaces_recovers_a_molrg_and_ignores_padding():
  k, d, r, n = 3, 12, 2, 8
  data, mask, rank_mask, truth, labels = _union_of_subspaces(0, k, d, r, n, pad=2)
  res = clustering.k_subspaces(jax.random.PRNGKey(1), data, mask, rank_mask, k,
                               iters=8, restarts=2)
  assert float(clustering.max_matched_distance(res.bases, truth)) < 1e-4
  assert float(clustering.label_accuracy(res.labels, labels, mask, k)) == 1.0
  np.testing.assert_allclose(res.objective,
                             clustering.clustering_objective(data, mask, truth), rtol=1e-5)
  # Masked rows hold garbage: same answer.
  garbage = data.at[k * n:].set(50.0)
  res2 = clustering.k_subspaces(jax.random.PRNGKey(1), garbage, mask, rank_mask, k,
                                iters=8, restarts=2)
  np.testing.assert_allclose(res2.bases, res.bases, atol=1e-6)


def test_seed_bases_shapes_and_orthonormal_blocks():
  k, d, r = 2, 10, 3
  data, mask, rank_mask, truth, _ = _union_of_subspaces(2, k, d, r, 2, pad=3)  # N < r
  cmask = jnp.broadcast_to(rank_mask, (k, r))
  seeds = jax.jit(clustering.seed_bases)(jax.random.PRNGKey(3), data, mask, cmask)
  assert seeds.shape == (k, d, r)
  for b in np.asarray(seeds):
    np.testing.assert_allclose(b.T @ b, np.eye(r), atol=1e-5)
  # With N ≥ r points per subspace the seeds are the subspaces themselves.
  data, mask, rank_mask, truth, _ = _union_of_subspaces(4, k, d, r, 6, pad=0)
  seeds = jax.jit(clustering.seed_bases)(jax.random.PRNGKey(5), data, mask, cmask)
  assert float(clustering.max_matched_distance(seeds, truth)) < 1e-4


def test_orthonormal_floor_is_the_polar_factor_distance(x64):
  """Two subspaces at principal angle θ: the nearest orthonormal pair (polar
  factor of [U_0 U_1]) sits exactly sqrt(2r) sin((90° − θ)/2) from each."""
  from repro_jax.studies import _clustering_hard as hard
  rng = np.random.default_rng(4)
  d, r = 20, 3
  q = _orth(rng, d, 2 * r)
  for theta in (80.0, 45.0, 20.0):
    c, s = np.cos(np.radians(theta)), np.sin(np.radians(theta))
    u0, u1 = q[:, :r], c * q[:, :r] + s * q[:, r:]
    w, _, vt = np.linalg.svd(np.concatenate([u0, u1], 1), full_matrices=False)
    polar = w @ vt
    dist = [np.linalg.norm(b @ b.T - a @ a.T) for a, b in ((u0, polar[:, :r]),
                                                          (u1, polar[:, r:]))]
    np.testing.assert_allclose(dist, hard.orthonormal_floor(r, theta), rtol=1e-9)
    # And no mutually orthogonal pair does better on both: a random search.
    for _ in range(50):
      z = np.linalg.qr(polar + 0.05 * rng.normal(size=polar.shape))[0]
      worst = max(np.linalg.norm(z[:, :r] @ z[:, :r].T - u0 @ u0.T),
                  np.linalg.norm(z[:, r:] @ z[:, r:].T - u1 @ u1.T))
      assert worst >= hard.orthonormal_floor(r, theta) - 1e-9


def test_tsc_affinity_and_spectral_baseline():
  """The TSC affinity is symmetric, keeps q neighbours per point, and the
  spectral baseline separates two orthogonal subspaces."""
  from repro_jax.lowrank import molrg_grid
  from repro_jax.studies import _clustering_hard as hard
  grid = molrg_grid.molrg_grid(jax.random.PRNGKey(2), [0], [12], [2], dim=10, num_components=2)
  x = np.asarray(grid.data[0], np.float64)
  a = hard.tsc_affinity(x, 3)
  np.testing.assert_array_equal(a, a.T)
  assert np.all((a > 0).sum(1) >= 3) and np.all(np.diag(a) == 0)
  bases = hard.spectral_cells(grid, 2, 2, neighbours=3, seed=0)
  assert float(clustering.max_matched_distance(bases[0], grid.truth[0])) < 1e-4
