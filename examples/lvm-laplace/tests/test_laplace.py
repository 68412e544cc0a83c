"""lvm-laplace keeps lvm's likelihood contract: run with ``pytest`` after ``pip install .``."""

from lvm.testing import check_likelihood


def test_laplace_keeps_the_likelihood_contract() -> None:
    check_likelihood("laplace", event_shape=(4,))
