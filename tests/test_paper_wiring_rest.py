"""The other half of the tiny paper runs outside the zoo (see
test_paper_wiring_others.py)."""

import pytest

from test_paper_wiring import tiny_paper_run
from test_paper_wiring_others import OTHERS

HERE = OTHERS[1::2]


@pytest.mark.parametrize("name", HERE)
def test_tiny_paper_run(name, cifar10, tmp_path_factory):
  tiny_paper_run(name, cifar10, tmp_path_factory)
