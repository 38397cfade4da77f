"""Board telemetry read from fake boards: identity, SoC, clocks, temperatures, throttling, power mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agent import __version__, telemetry
from tests.support.fakes import boards, scripts


@pytest.mark.parametrize("name, model, soc", [
    ("jetson_nano", "NVIDIA Jetson Nano Developer Kit", "NVIDIA Tegra X1 (T210)"),
    ("orin_nano", "NVIDIA Jetson Orin Nano Developer Kit", "NVIDIA Orin (T234)"),
    ("agx_orin", "NVIDIA Jetson AGX Orin Developer Kit", "NVIDIA Orin (T234)"),
    ("raspberry_pi4", "Raspberry Pi 4 Model B Rev 1.5", "Broadcom BCM2711"),
    ("raspberry_pi5", "Raspberry Pi 5 Model B Rev 1.0", "Broadcom BCM2712"),
    ("imx8mp", "NXP i.MX8MPlus EVK board", "NXP i.MX 8M Plus"),
    ("x86_rapl", "Dell Inc. OptiPlex 7090", "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz"),
])
def test_board_model_and_soc(board, name, model, soc):
    root = board(name)
    assert telemetry.board_model(root) == model  # the device tree's trailing NUL is gone
    assert telemetry.soc(root) == soc


def test_kernel_governors_and_clocks(board):
    root = board("jetson_nano")
    assert telemetry.kernel(root) == "4.9.337-tegra"
    assert telemetry.cpu_governors(root) == {f"cpu{i}": "schedutil" for i in range(4)}
    assert telemetry.cpu_freq_mhz(root) == {f"cpu{i}": 1479.0 for i in range(4)}
    # cpu10 after cpu9, not after cpu1
    assert list(telemetry.cpu_freq_mhz(board("agx_orin"))) == [f"cpu{i}" for i in range(12)]


def test_temperatures_skip_offline_zones(board):
    temps = telemetry.temperatures_c(board("orin_nano"))
    assert not any(name.startswith("cv") for name in temps)  # -256000: offline on the Orin Nano
    assert temps["cpu-thermal"] == pytest.approx(46.531) and temps["tj-thermal"] == pytest.approx(48.843)
    assert telemetry.temperatures_c(board("imx8mp")) == {"cpu-thermal": 42.0, "soc-thermal": 41.0}
    assert telemetry.temperatures_c(board("raspberry_pi4")) == {"cpu-thermal": pytest.approx(48.123)}


def test_temperatures_keep_zones_that_share_a_type_and_drop_minus_256(board):
    root = board("x86_rapl")
    boards.write(Path(root), "sys/devices/virtual/thermal/thermal_zone3/type", "iwlwifi_1\n")
    boards.write(Path(root), "sys/devices/virtual/thermal/thermal_zone3/temp", "-256\n")
    assert telemetry.temperatures_c(root) == {"acpitz": 27.8, "x86_pkg_temp": 45.0,
                                              "acpitz (thermal_zone2)": 29.8}


def test_throttle_flags_of_0x50005():
    flags = telemetry.decode_throttled(0x50005)
    assert flags == {
        "under_voltage_now": True, "under_voltage_since_boot": True,
        "arm_freq_capped_now": False, "arm_freq_capped_since_boot": False,
        "throttled_now": True, "throttled_since_boot": True,
        "soft_temp_limit_now": False, "soft_temp_limit_since_boot": False,
    }
    assert not any(telemetry.decode_throttled(0).values())
    assert telemetry.decode_throttled(0x80000)["soft_temp_limit_since_boot"] is True


def test_throttling_from_vcgencmd(board, tmp_path):
    throttling = telemetry.throttling(board("raspberry_pi4"))
    assert throttling is not None and throttling["raw"] == "0x50005"
    assert throttling["under_voltage_now"] and throttling["throttled_now"] and throttling["throttled_since_boot"]
    assert telemetry.throttling(board("imx8mp")) is None  # no vcgencmd
    healthy = scripts.vcgencmd(tmp_path / "vcgencmd", {"get_throttled": "throttled=0x0\n"})
    assert telemetry.throttling("/", vcgencmd=str(healthy))["under_voltage_since_boot"] is False


def test_jetson_power_mode_from_nvpmodel_then_its_files(board):
    root = board("orin_nano")
    assert telemetry.jetson_power_mode(root) == {"name": "15W", "id": 0, "source": "nvpmodel -q"}
    os.remove(os.path.join(root, "usr/sbin/nvpmodel"))
    boards.write(Path(root), "var/lib/nvpmodel/status", "pmode:0001\n")
    assert telemetry.jetson_power_mode(root) == {"name": "7W", "id": 1, "source": "/var/lib/nvpmodel/status"}
    os.remove(os.path.join(root, "var/lib/nvpmodel/status"))
    assert telemetry.jetson_power_mode(root) == {"name": "15W", "id": 0,
                                                 "source": "/etc/nvpmodel.conf default (current unknown)"}
    assert telemetry.jetson_power_mode(board("raspberry_pi5")) is None


def test_nvpmodel_parsers():
    assert telemetry.parse_nvpmodel_query("NV Power Mode: MAXN_SUPER\n2\n") == {"name": "MAXN_SUPER", "id": 2}
    verbose = "NVPM VERB: Config file: /etc/nvpmodel.conf\nNVPM VERB: Current mode: NV Power Mode: MODE_15W_6CORE\n2\n"
    assert telemetry.parse_nvpmodel_query(verbose) == {"name": "MODE_15W_6CORE", "id": 2}
    conf = ("< PM_CONFIG DEFAULT=2 >\n< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n"
            "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n")
    assert telemetry.nvpmodel_names(conf) == {0: "15W", 2: "MAXN_SUPER"}


def test_conditions_and_identity_on_a_fake_pi5(board):
    root = board("raspberry_pi5")
    state = telemetry.conditions(root)
    assert state["temperatures_c"] == {"cpu-thermal": pytest.approx(52.65)}
    assert state["cpu_governors"]["cpu0"] == "ondemand" and state["cpu_freq_mhz"]["cpu3"] == 2400.0
    assert state["throttling"]["raw"] == "0x50005" and state["power_mode"] is None
    info = telemetry.identity(root)
    assert info["board"] == "Raspberry Pi 5 Model B Rev 1.0" and info["soc"] == "Broadcom BCM2712"
    assert info["kernel"] == "6.6.51+rpt-rpi-2712"
    assert info["agent_version"] == __version__ and info["python"] == ".".join(map(str, sys.version_info[:3]))


def test_software_names_onnxruntime_and_its_providers():
    info = telemetry.software(["CPUExecutionProvider"])
    assert "CPUExecutionProvider" in info["providers_available"] and info["onnxruntime"]
    assert info["providers_used"] == ["CPUExecutionProvider"]


def test_an_empty_root_gives_empty_answers_not_errors(tmp_path):
    root = str(tmp_path)
    assert telemetry.board_model(root) is None and telemetry.soc(root) is None
    assert telemetry.conditions(root) == {"temperatures_c": {}, "cpu_freq_mhz": {}, "cpu_governors": {},
                                          "throttling": None, "power_mode": None}
