"""Shared test configuration: hypothesis profiles and seeded generators.

Profiles: ``ci`` (bounded, derandomised; chosen when the CI environment variable is set),
``dev`` (the default), ``deep`` (many examples, for long local runs:
``pytest --hypothesis-profile=deep``).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("deep", max_examples=2000, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
