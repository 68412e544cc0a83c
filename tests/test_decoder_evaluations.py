"""Each estimator's stated cost in decoder evaluations against the z rows its decoder actually receives."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from exact_models import Spy, bernoulli_2d, sample_data

from lvm import create_estimator
from lvm.estimators.bdmc import bdmc

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "elbo", "num_samples": 3}, 3),
        ({"name": "importance", "num_samples": 7, "chunk_size": 3}, 7),
        ({"name": "importance", "num_samples": 5, "proposal": "defensive"}, 5),
        ({"name": "prior", "num_samples": 6}, 6),
        # (K + pilot)(1 + (T - 1) L) + 1 = (3 + 2)(1 + 3 * 2) + 1
        ({"name": "ais", "num_samples": 3, "steps": 4, "leapfrog_steps": 2, "pilot_chains": 2}, 36),
        ({"name": "ais", "num_samples": 2, "steps": 1, "pilot_chains": 1}, 4),  # T = 1: IS plus the probe
    ],
)
def test_decoder_evaluations_per_datapoint_are_the_rows_decoded(spec: dict[str, Any], expected: int) -> None:
    model = bernoulli_2d(d=10)
    x = sample_data(model, 4)
    model.decoder = Spy(model.decoder)
    est = create_estimator(spec)
    est.estimate(model, x, index=torch.arange(4), seed=0)
    assert est.decoder_evaluations(model) == expected
    assert model.decoder.rows == 4 * expected


def test_quadrature_counts_its_two_grids_once_per_batch() -> None:
    model = bernoulli_2d(d=10)
    x = sample_data(model, 4)
    model.decoder = Spy(model.decoder)
    est = create_estimator("quadrature", points=10)
    est.estimate(model, x)
    assert est.decoder_evaluations(model) == 10**2 + 5**2 == model.decoder.rows


def test_sandwich_reports_the_evaluations_of_each_direction() -> None:
    model = bernoulli_2d(d=10)
    model.decoder = Spy(model.decoder)
    n, k, pilot, steps, leapfrog = 3, 2, 1, 5, 2
    s = bdmc(model, n, steps, num_chains=k, seed=0, leapfrog_steps=leapfrog, pilot_chains=pilot)
    assert s.lower_decoder_evaluations == (k + pilot) * (1 + (steps - 1) * leapfrog) + 1 == 28
    assert s.upper_decoder_evaluations == (k + pilot) * (1 + (steps - 1) * leapfrog) == 27
    # plus one row per datapoint for simulating x ~ p(x | z)
    assert model.decoder.rows == n * (1 + s.lower_decoder_evaluations + s.upper_decoder_evaluations)
