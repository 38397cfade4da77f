"""Devices and the transports that reach their agents."""
