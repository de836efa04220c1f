"""Experiments as library code: each study module exposes `run(config, workdir)`.

Entry points in `experiments/` only parse flags and call `run`; the main job
(`python -m experiments.reproduce`) runs the studies listed in `STUDIES`, in
order, and rebuilds `results/README.md` from their `report.md` sections.
"""

# name -> (module under repro_jax.studies, config file relative to the repo root)
STUDIES: dict[str, tuple[str, str]] = {
    "theory_checks": ("theory_checks", "configs/theory_checks.py"),
    "pca_equivalence": ("pca_equivalence", "configs/pca_equivalence.py"),
    "subspace_clustering": ("subspace_clustering", "configs/subspace_clustering.py"),
    "molrg_networks": ("molrg_networks", "configs/molrg_networks.py"),
    "memorization_theory": ("memorization_theory", "configs/memorization_theory.py"),
    "optimization_view": ("optimization_view", "configs/optimization_view.py"),
    "reproducibility_regimes": ("reproducibility_regimes", "configs/reproducibility_regimes.py"),
    "reproducibility_across_samplers": ("reproducibility_across_samplers",
                                        "configs/reproducibility_across_samplers.py"),
}
