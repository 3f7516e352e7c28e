"""
The test suite of WebWire for Twisted, run with C{trial}.

Hypothesis runs without its deadline and its "too slow" health check:
both judge wall-clock time, which a loaded machine (or CI running several
Pythons at once) stretches, and no test here asserts on speed.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "webwire",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("webwire")
