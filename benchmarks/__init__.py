"""Measurements of orch itself. `make bench` runs them all; none of them runs in the test suite."""
