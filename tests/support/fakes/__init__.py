"""Fakes for hardware that is not here: sysfs trees, board tools as scripts, serial meters behind a pty.

Each reproduces the formats in shared/reference/telemetry-formats.md exactly;
the logic under test (agent/power, agent/telemetry) is always the real one.
"""
