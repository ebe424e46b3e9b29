"""Hypothesis settings profiles for the suite: pick one with HYPOTHESIS_PROFILE.

``dev`` (default) keeps the suite quick, ``ci`` is the same without the example database
(a clean clone has none), ``nightly`` runs the property and state-machine tests much longer.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, database=None, print_blob=True)
settings.register_profile("nightly", deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
