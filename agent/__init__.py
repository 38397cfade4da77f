"""The board side of orch.

Runs on the board with Python 3.8+, numpy and onnxruntime only: it imports
nothing from `orchestrator` and never imports torch. Everything that crosses
from the workstation is JSON text or a file verified by its sha256.
"""

from typing import List

__version__ = "0.1.0"

# Version of the job spec / result JSON contract (see agent/spec.py).
SCHEMA_VERSION = 1

# Every line the agent writes for the orchestrator to read through a login shell starts with this, so what a
# board's shell prints of its own (a banner, a message of the day) is told apart and ignored.
FRAME = "@orch@ "


def framed(body: str) -> str:
    """One line for the orchestrator: FRAME, then `body` (JSON text on one line)."""
    return FRAME + body


def unframed(text: str) -> "List[str]":
    """The bodies of the framed lines in `text`, in order (every other line is ignored)."""
    return [line[len(FRAME):] for line in text.splitlines() if line.startswith(FRAME)]
