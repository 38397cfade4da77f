"""Who and what the board is: identity, software stack, thermal state.

Every reader takes a `root` path so tests can point it at a fake sysfs tree.
"""

from __future__ import annotations

import glob
import os
import platform
import socket
import sys
from typing import Any, Dict, Optional

from agent import __version__


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return None


def board_model(root: str = "/") -> Optional[str]:
    """The board's model string: device tree on ARM boards, DMI on x86."""
    model = _read(os.path.join(root, "proc/device-tree/model"))
    if model:
        return model
    vendor = _read(os.path.join(root, "sys/class/dmi/id/sys_vendor"))
    product = _read(os.path.join(root, "sys/class/dmi/id/product_name"))
    parts = [p for p in (vendor, product) if p]
    return " ".join(parts) or None


def temperatures_c(root: str = "/") -> Dict[str, float]:
    """Every readable thermal zone, by its type, in degrees Celsius (offline sensors left out)."""
    temps: Dict[str, float] = {}
    for zone in sorted(glob.glob(os.path.join(root, "sys/devices/virtual/thermal/thermal_zone*"))):
        kind = _read(os.path.join(zone, "type")) or os.path.basename(zone)
        raw = _read(os.path.join(zone, "temp"))
        try:
            millideg = int(raw) if raw is not None else None
        except ValueError:
            millideg = None
        if millideg is None or millideg in (-256000, -256):
            continue
        temps[kind] = millideg / 1000.0
    return temps


def software(providers_used: Optional[list] = None) -> Dict[str, Any]:
    """The software stack a result was measured with."""
    info: Dict[str, Any] = {
        "agent_version": __version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        import numpy
        import onnxruntime

        info["numpy"] = numpy.__version__
        info["onnxruntime"] = onnxruntime.__version__
        info["providers_available"] = onnxruntime.get_available_providers()
    except ImportError as exc:  # reported, not fatal: `agent info` must work to diagnose this
        info["import_error"] = str(exc)
    if providers_used is not None:
        info["providers_used"] = providers_used
    return info


def identity(root: str = "/") -> Dict[str, Any]:
    """Board identity and software stack, for `agent info` and every result."""
    return {
        "hostname": socket.gethostname(),
        "board": board_model(root),
        "cpu_count": os.cpu_count(),
        "executable": sys.executable,
        **software(),
    }
