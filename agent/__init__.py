"""The board side of orch.

Runs on the board with Python 3.8+, numpy and onnxruntime only: it imports
nothing from `orchestrator` and never imports torch. Everything that crosses
from the workstation is JSON text or a file verified by its sha256.
"""

__version__ = "0.1.0"

# Version of the job spec / result JSON contract (see agent/spec.py).
SCHEMA_VERSION = 1
