"""orch, the workstation side: build compressed variants, benchmark them on boards, record results."""

__version__ = "0.1.0"
