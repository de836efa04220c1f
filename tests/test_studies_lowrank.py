"""The pca_equivalence and subspace_clustering studies, end to end at smoke size.

Each runs its `smoke` config into a temporary directory; the asserted numbers
come from the metrics.json it writes.
"""

import json
import pathlib

from repro_jax.studies import common
from repro_jax.studies import pca_equivalence
from repro_jax.studies import subspace_clustering

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _files(workdir):
  return {p.name for p in pathlib.Path(workdir).iterdir()}


def test_pca_equivalence_smoke(tmp_path):
  config = common.load_config(ROOT / "configs/pca_equivalence.py", "smoke")
  pca_equivalence.run(config, tmp_path)
  assert {"config.json", "metrics.json", "cells.csv", "report.md", "pca_transition.png",
          "pca_phase.png"} <= _files(tmp_path)
  m = json.loads((tmp_path / "metrics.json").read_text())
  assert m["max_dist_pca_n_ge_r"] < 1e-6              # trained U = PCA (float64)
  assert m["max_dist_truth_n_ge_r"] < 1e-3
  assert m["success_rate_n_ge_r"] == 1.0 and m["success_rate_n_lt_r"] == 0.0
  assert abs(m["boundary_slope"] - 1) < 1e-9 and abs(m["boundary_intercept"]) < 1e-9
  assert m["max_objective_gap"] < 1e-9
  report = (tmp_path / "report.md").read_text()
  assert "**Verdict.**" in report and "pca_phase.png" in report


def test_subspace_clustering_smoke(tmp_path):
  config = common.load_config(ROOT / "configs/subspace_clustering.py", "smoke")
  subspace_clustering.run(config, tmp_path)
  assert {"metrics.json", "cells.csv", "report.md", "sc_phase.png",
          "sc_agreement.png"} <= _files(tmp_path)
  m = json.loads((tmp_path / "metrics.json").read_text())
  (panel,) = m["panels"]
  assert panel["success_n_ge_r"] == 1.0 and panel["success_n_lt_r"] == 0.0
  assert panel["kss_success_n_ge_r"] == 1.0
  assert panel["agreement_n_gt_r"] == 1.0
  assert panel["max_dist_trained_kss_n_gt_r"] < 0.1
  assert panel["acc_trained_n_gt_r"] == 1.0 and panel["acc_kss_n_gt_r"] == 1.0
  assert abs(panel["slope"] - 1) < 1e-9
  assert panel["max_joint_orthonormality_error"] < 1e-5       # [U_1 … U_K] orthonormal
  assert m["random_init"] is None                    # not run at smoke scale
  assert "**Verdict.**" in (tmp_path / "report.md").read_text()
