"""The experiments as library code: one module per study, same skeleton for all.

What belongs here: each study's settings (with its variants and the criteria
of its verdicts), its measurement, its verdicts and its report and figures
(`common` describes the protocol); measurements only one study makes live in
that study's private modules (`_<name>*.py`).  A new study is a module here,
a name in `STUDIES`, a thin config file `<name>.py` beside the others and an
entry point `experiments/<name>.py`.
`runner` runs studies and builds the results page; `verdicts` is the schema
of what a study concluded.

May import anything in `repro_jax`; nothing outside `repro_jax.studies`
imports a study.
"""

# The studies of the main job, in the order it runs them.
STUDIES: tuple[str, ...] = (
    "theory_checks",
    "pca_equivalence",
    "subspace_clustering",
    "molrg_networks",
    "memorization_theory",
    "reproducibility_regimes",
    "reproducibility_across_samplers",
    "reproducibility_across_models",
    "jacobian_rank",
    "optimization_view",      # after the networks it restores (trains them if missing)
    "closed_form_atlas",      # after every zoo it scores
    "loco_edit",
    "watermark",
    "ddim_table",
    "conditional_models",     # reproducibility paper §4: conditional, inverse problems,
    "inverse_problems",       # partial fine-tuning and the GAN/VAE negative control
    "fine_tuning",
    "gan_vae_control",
)
