"""Measuring: the runner (the loop), the session (sampler, writer, run.json, exit status), planning and
suites, fleets, the fingerprint."""
