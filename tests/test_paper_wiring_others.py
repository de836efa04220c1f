"""The tiny paper runs of the studies outside the zoo (see test_paper_wiring.py),
split over this file and test_paper_wiring_rest.py so that pytest-xdist's
`--dist loadfile` spreads them over the workers."""

import pytest

from repro_jax.studies import STUDIES

from test_paper_wiring import ZOO_STUDIES
from test_paper_wiring import tiny_paper_run

OTHERS = [n for n in STUDIES if n not in ZOO_STUDIES]
HERE = OTHERS[0::2]          # the rest run in test_paper_wiring_rest.py


def test_every_study_runs_in_one_of_the_files():
  from test_paper_wiring_rest import HERE as REST
  assert len(ZOO_STUDIES) == 2 and set(ZOO_STUDIES) < set(STUDIES)
  assert sorted(HERE + REST + list(ZOO_STUDIES)) == sorted(STUDIES)


@pytest.mark.parametrize("name", HERE)
def test_tiny_paper_run(name, cifar10, tmp_path_factory):
  tiny_paper_run(name, cifar10, tmp_path_factory)
