"""Who and what the board is: identity, software stack, clocks, thermal state, throttling, power mode.

Every reader takes a `root` path so tests can point it at a fake filesystem
tree, and every command-running reader takes the command's path (by default
the tool found on PATH, or under `root` when it is a fake tree). A reader that
finds nothing returns None or an empty dict: telemetry never stops a run.
Formats: shared/reference/telemetry-formats.md.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import socket
import sys
from typing import Any, Dict, List, Optional

from agent import __version__
from agent.power.sysfs import find_command, read_int, read_text, rooted, run_command

# The SoC behind a device-tree `compatible` entry (the list is most specific first).
SOC_BY_COMPATIBLE = {
    "nvidia,tegra210": "NVIDIA Tegra X1 (T210)",
    "nvidia,tegra186": "NVIDIA Tegra X2 (T186)",
    "nvidia,tegra194": "NVIDIA Xavier (T194)",
    "nvidia,tegra234": "NVIDIA Orin (T234)",
    "brcm,bcm2837": "Broadcom BCM2837",
    "brcm,bcm2711": "Broadcom BCM2711",
    "brcm,bcm2712": "Broadcom BCM2712",
    "fsl,imx8mp": "NXP i.MX 8M Plus",
    "fsl,imx8mm": "NXP i.MX 8M Mini",
    "fsl,imx8mq": "NXP i.MX 8M",
}

# vcgencmd get_throttled bits: 0-3 now, 16-19 the same conditions since boot.
THROTTLE_BITS = {0: "under_voltage", 1: "arm_freq_capped", 2: "throttled", 3: "soft_temp_limit"}
SINCE_BOOT_SHIFT = 16

OFFLINE_MILLIDEGREES = (-256000, -256)


def board_model(root: str = "/") -> Optional[str]:
    """The board's model string: device tree on ARM boards, DMI on x86."""
    model = read_text(rooted(root, "proc/device-tree/model"))
    if model:
        return model
    vendor = read_text(rooted(root, "sys/class/dmi/id/sys_vendor"))
    product = read_text(rooted(root, "sys/class/dmi/id/product_name"))
    parts = [p for p in (vendor, product) if p]
    return " ".join(parts) or None


def soc(root: str = "/") -> Optional[str]:
    """The SoC where known: from the device-tree `compatible` list on ARM, the CPU model name on x86."""
    compatible = read_text(rooted(root, "proc/device-tree/compatible"))
    if compatible:
        for entry in compatible.split("\x00"):
            if entry in SOC_BY_COMPATIBLE:
                return SOC_BY_COMPATIBLE[entry]
        return compatible.split("\x00")[-1] or None
    cpuinfo = read_text(rooted(root, "proc/cpuinfo")) or ""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else None


def kernel(root: str = "/") -> str:
    """The running kernel's release."""
    return read_text(rooted(root, "proc/sys/kernel/osrelease")) or platform.release()


def _cpu_folders(root: str) -> List[str]:
    folders = glob.glob(rooted(root, "sys/devices/system/cpu/cpu[0-9]*"))
    return sorted(folders, key=lambda f: int(re.sub(r"\D", "", os.path.basename(f)) or 0))


def cpu_governors(root: str = "/") -> Dict[str, str]:
    """The cpufreq scaling governor of every CPU that has one, by CPU (cpu0, cpu1, ...)."""
    governors = {}
    for folder in _cpu_folders(root):
        governor = read_text(os.path.join(folder, "cpufreq", "scaling_governor"))
        if governor:
            governors[os.path.basename(folder)] = governor
    return governors


def cpu_freq_mhz(root: str = "/") -> Dict[str, float]:
    """The current clock of every CPU with cpufreq (scaling_cur_freq, kHz), in MHz."""
    clocks = {}
    for folder in _cpu_folders(root):
        khz = read_int(os.path.join(folder, "cpufreq", "scaling_cur_freq"))
        if khz is not None:
            clocks[os.path.basename(folder)] = khz / 1000.0
    return clocks


def temperatures_c(root: str = "/") -> Dict[str, float]:
    """Every readable thermal zone, by its type, in degrees Celsius (offline sensors left out).

    A type that two zones share (x86 `acpitz`, say) is keyed `type (thermal_zoneN)` for the second.
    """
    temps: Dict[str, float] = {}
    zones = glob.glob(rooted(root, "sys/devices/virtual/thermal/thermal_zone*"))
    for zone in sorted(zones, key=lambda z: int(re.sub(r"\D", "", os.path.basename(z)) or 0)):
        millideg = read_int(os.path.join(zone, "temp"))
        if millideg is None or millideg in OFFLINE_MILLIDEGREES:
            continue
        kind = read_text(os.path.join(zone, "type")) or os.path.basename(zone)
        key = kind if kind not in temps else f"{kind} ({os.path.basename(zone)})"
        temps[key] = millideg / 1000.0
    return temps


def decode_throttled(value: int) -> Dict[str, bool]:
    """Named flags of a `vcgencmd get_throttled` value: `<condition>_now` and `<condition>_since_boot`."""
    flags = {}
    for bit, condition in THROTTLE_BITS.items():
        flags[f"{condition}_now"] = bool((value >> bit) & 1)
        flags[f"{condition}_since_boot"] = bool((value >> (bit + SINCE_BOOT_SHIFT)) & 1)
    return flags


def throttling(root: str = "/", vcgencmd: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Raspberry Pi throttling from `vcgencmd get_throttled`: the raw value and its flags; None elsewhere."""
    command = vcgencmd or find_command(root, "vcgencmd")
    if not command:
        return None
    output = run_command([command, "get_throttled"])
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", output or "")
    if not match:
        return None
    value = int(match.group(1), 16)
    return {"raw": match.group(1), **decode_throttled(value)}


def parse_nvpmodel_query(text: str) -> Optional[Dict[str, Any]]:
    """{"name", "id"} from `nvpmodel -q` output: `NV Power Mode: MAXN` and the id on the next line."""
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        match = re.search(r"NV Power Mode:\s*(\S.*)$", line)
        if match:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            return {"name": match.group(1).strip(), "id": int(following) if following.isdigit() else None}
    return None


def nvpmodel_names(conf_text: str) -> Dict[int, str]:
    """Power-mode names by id from /etc/nvpmodel.conf lines `< POWER_MODEL ID=0 NAME=MAXN >`."""
    return {int(i): name for i, name in re.findall(r"^<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>",
                                                    conf_text, re.MULTILINE)}


def jetson_power_mode(root: str = "/", nvpmodel: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The Jetson power mode {"name", "id", "source"}; None on other boards.

    First `nvpmodel -q`; where that is missing or refused, the mode nvpmodel last
    set (/var/lib/nvpmodel/status, `pmode:0002`) named through /etc/nvpmodel.conf;
    else the configuration's boot default (`< PM_CONFIG DEFAULT=2 >`), marked as such.
    """
    command = nvpmodel or find_command(root, "nvpmodel")
    if command:
        parsed = parse_nvpmodel_query(run_command([command, "-q"]) or "")
        if parsed:
            return {**parsed, "source": "nvpmodel -q"}
    conf = read_text(rooted(root, "etc/nvpmodel.conf")) or ""
    status = read_text(rooted(root, "var/lib/nvpmodel/status")) or ""
    names = nvpmodel_names(conf)
    match = re.search(r"pmode:(\d+)", status)
    if match:
        mode_id = int(match.group(1))
        return {"name": names.get(mode_id), "id": mode_id, "source": "/var/lib/nvpmodel/status"}
    default = re.search(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>", conf)
    if default:
        mode_id = int(default.group(1))
        return {"name": names.get(mode_id), "id": mode_id, "source": "/etc/nvpmodel.conf default (current unknown)"}
    return None


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
        "soc": soc(root),
        "cpu_count": os.cpu_count(),
        "executable": sys.executable,
        **software(),
        "kernel": kernel(root),
    }


def conditions(root: str = "/", vcgencmd: Optional[str] = None, nvpmodel: Optional[str] = None) -> Dict[str, Any]:
    """The board's state now, for before/after a run: temperatures, clocks, governors, throttling, power mode.

    Fields: temperatures_c {zone: °C}, cpu_freq_mhz {cpuN: MHz}, cpu_governors {cpuN: name},
    throttling (Raspberry Pi: raw + flags, else None), power_mode (Jetson: name/id/source, else None).
    """
    return {
        "temperatures_c": temperatures_c(root),
        "cpu_freq_mhz": cpu_freq_mhz(root),
        "cpu_governors": cpu_governors(root),
        "throttling": throttling(root, vcgencmd),
        "power_mode": jetson_power_mode(root, nvpmodel),
    }
