"""The tiny paper runs of the studies outside the zoo (see test_paper_wiring.py),
in a file of their own so that two test workers share the runs."""

import pytest

from repro_jax.studies import STUDIES

from test_paper_wiring import ZOO_STUDIES
from test_paper_wiring import tiny_paper_run


def test_every_study_runs_in_one_of_the_two_files():
  assert len(ZOO_STUDIES) == 2 and set(ZOO_STUDIES) < set(STUDIES)


@pytest.mark.parametrize("name", [n for n in STUDIES if n not in ZOO_STUDIES])
def test_tiny_paper_run(name, cifar10, tmp_path_factory):
  tiny_paper_run(name, cifar10, tmp_path_factory)
