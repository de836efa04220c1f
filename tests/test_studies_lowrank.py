"""The pca_equivalence and subspace_clustering studies, end to end at smoke size.

Each runs its `smoke` settings through `runner.run_study` into a temporary
directory; the asserted numbers come from the metrics.json it writes.
"""

import json
import pathlib

import pytest

from repro_jax import settings as settings_lib
from repro_jax.studies import runner
from repro_jax.studies import verdicts


def _files(workdir):
  return {p.name for p in pathlib.Path(workdir).iterdir()}


def _verdicts(m):
  """The verdicts metrics.json holds, checked against the schema."""
  assert isinstance(m["verdicts"], list) and m["verdicts"]
  return {v.claim: v.verdict for v in verdicts.from_dicts(m["verdicts"])}


def test_pca_equivalence_smoke(tmp_path):
  s = runner.study_settings("pca_equivalence", "smoke")
  runner.run_study("pca_equivalence", s, tmp_path / "pca_equivalence")
  workdir = tmp_path / "pca_equivalence"
  assert {"config.json", "metrics.json", "manifest.json", "cells.csv", "report.md",
          "pca_transition.png", "pca_phase.png"} <= _files(workdir)
  m = json.loads((workdir / "metrics.json").read_text())
  assert m["max_dist_pca_n_ge_r"] < 1e-6              # trained U = PCA (float64)
  assert m["max_dist_truth_n_ge_r"] < 1e-3
  assert m["success_rate_n_ge_r"] == 1.0 and m["success_rate_n_lt_r"] == 0.0
  assert abs(m["boundary_slope"] - 1) < 1e-9 and abs(m["boundary_intercept"]) < 1e-9
  assert m["max_objective_gap"] < 1e-9
  # At D = 12 the r − N directions beyond the data meet U_g by chance in some
  # N < r cells: the w.h.p. bound then holds in fewer than 95 % of them.
  bound_holds = m["fraction_above_bound_n_lt_r"] >= s.min_fraction_above_bound
  assert [v["verdict"] for v in m["verdicts"]] == [
      "reproduced", "reproduced" if bound_holds else "not reproduced", "reproduced"]
  report = (workdir / "report.md").read_text()
  assert "**Verdict.**" in report and "pca_phase.png" in report
  assert "| claim | verdict | criterion | measured |" in report


def test_pca_equivalence_settings():
  s = runner.study_settings("pca_equivalence", "smoke")
  assert s.train.steps == 100 and s.variants == () and not s.plain_sgd
  paper = runner.study_settings("pca_equivalence", "paper")
  assert paper.train.steps == 500 and paper.train.learning_rate == 0.5
  with pytest.raises(ValueError, match="training variant"):
    settings_lib.override(s, {"variants": ("single_t", "bogus")})


def test_subspace_clustering_smoke(tmp_path):
  s = runner.study_settings("subspace_clustering", "smoke")
  runner.run_study("subspace_clustering", s, tmp_path / "subspace_clustering")
  workdir = tmp_path / "subspace_clustering"
  assert {"config.json", "metrics.json", "manifest.json", "cells.csv", "report.md",
          "sc_phase.png", "sc_agreement.png"} <= _files(workdir)
  m = json.loads((workdir / "metrics.json").read_text())
  (panel,) = m["panels"]
  assert panel["success_n_ge_r"] == 1.0 and panel["success_n_lt_r"] == 0.0
  assert panel["kss_success_n_ge_r"] == 1.0
  assert panel["agreement_n_gt_r"] == 1.0
  assert panel["max_dist_trained_kss_n_gt_r"] < 0.1
  assert panel["acc_trained_n_gt_r"] == 1.0 and panel["acc_kss_n_gt_r"] == 1.0
  assert abs(panel["slope"] - 1) < 1e-9
  assert panel["max_joint_orthonormality_error"] < 1e-5       # [U_1 … U_K] orthonormal
  assert m["random_init"] is None                    # not run at smoke scale
  # One D only: the "not with D" claim is not tested; the others hold.
  assert sorted(_verdicts(m).values()) == ["not tested", "reproduced", "reproduced"]
  report = (workdir / "report.md").read_text()
  assert "**Verdict.**" in report and "| claim | verdict | criterion | measured |" in report
  assert "**Verdict.** **reproduced** (2 reproduced, 1 not tested)" in report
