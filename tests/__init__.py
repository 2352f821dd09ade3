"""
sockproto's own tests.  Hypothesis profiles, chosen with the environment
variable HYPOTHESIS_PROFILE:

- ``default``: quick, for every run;
- ``fuzz``: at least 10,000 examples per fuzz test, 2,500 for those
  that make a WebSocket handshake each (CI runs it with ``pytest -m fuzz``).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
