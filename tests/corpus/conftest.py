"""Hypothesis profiles for the bad-input corpus.

The default (``corpus``) is small and derandomized, so CI runs the same examples every
time; ``HYPOTHESIS_PROFILE=long`` runs many more, randomly seeded."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "corpus",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,  # nothing written into the working tree
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    derandomize=False,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "corpus"))
