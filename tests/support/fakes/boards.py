"""Fake filesystem trees of the boards orch supports, built under a temporary root.

Paths, file names, units and line formats are those of
shared/reference/telemetry-formats.md. Values not given there (a rail's current
when the reference gives its power, a zone's temperature) are plausible and
consistent with the reference's tegrastats lines. Device-tree `compatible`
strings and kernel releases are the boards' usual ones (not in the reference).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.fakes import scripts, tegrastats_lines

RPI_THROTTLED = "throttled=0x50005\n"
# Pi 5 `vcgencmd pmic_read_adc`: the reference's three lines, in its format, plus BATT_V (voltage only).
PI5_PMIC_READ_ADC = (
    "VDD_CORE_A current(7)=1.11625000A\n"
    "VDD_CORE_V volt(15)=0.74944980V\n"
    "EXT5V_V volt(24)=5.08530000V\n"
    "BATT_V volt(25)=0.00000000V\n"
)
PI5_PMIC_W = 1.11625 * 0.74944980
RAPL_MAX_RANGE_UJ = 262143328850


def write(root: Path, relative: str, text: str) -> Path:
    """A file at root/relative holding `text` (parents created)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def device_tree(root: Path, model: str, compatible: list[str]) -> None:
    """proc/device-tree/model and compatible: NUL-terminated strings, as the kernel exposes them."""
    write(root, "proc/device-tree/model", model + "\0")
    write(root, "proc/device-tree/compatible", "".join(c + "\0" for c in compatible))


def thermal_zones(root: Path, zones: list[tuple[str, int]]) -> None:
    """sys/devices/virtual/thermal/thermal_zoneN/{type,temp} (m°C; -256000 is an offline sensor)."""
    for index, (kind, millideg) in enumerate(zones):
        write(root, f"sys/devices/virtual/thermal/thermal_zone{index}/type", kind + "\n")
        write(root, f"sys/devices/virtual/thermal/thermal_zone{index}/temp", f"{millideg}\n")


def cpus(root: Path, count: int, governor: str, cur_khz: int) -> None:
    """sys/devices/system/cpu/cpuN/cpufreq/{scaling_governor,scaling_cur_freq (kHz)}."""
    for index in range(count):
        write(root, f"sys/devices/system/cpu/cpu{index}/cpufreq/scaling_governor", governor + "\n")
        write(root, f"sys/devices/system/cpu/cpu{index}/cpufreq/scaling_cur_freq", f"{cur_khz}\n")


def kernel_release(root: Path, release: str) -> None:
    write(root, "proc/sys/kernel/osrelease", release + "\n")


def ina3221x_iio(root: Path, device: str, rails: list[tuple[str, int, int, int]]) -> Path:
    """JetPack 4 IIO `ina3221x`: rail_name_N, in_powerN_input (mW), in_currentN_input (mA), in_voltageN_input (mV)."""
    folder = f"sys/bus/i2c/drivers/ina3221x/{device}/iio:device0"
    for index, (name, mw, ma, mv) in enumerate(rails):
        write(root, f"{folder}/rail_name_{index}", name + "\n")
        write(root, f"{folder}/in_power{index}_input", f"{mw}\n")
        write(root, f"{folder}/in_current{index}_input", f"{ma}\n")
        write(root, f"{folder}/in_voltage{index}_input", f"{mv}\n")
    return root / folder


def ina3221_hwmon(root: Path, device: str, hwmon: int, channels: list[tuple[str, int, int]]) -> Path:
    """JetPack 5/6 hwmon `ina3221`: inN_label, inN_input (mV), currN_input/crit/max (mA) for N = 1..3,
    the sums in7_input and curr4_input, and the sys/class/hwmon link."""
    folder = f"sys/bus/i2c/drivers/ina3221/{device}/hwmon/hwmon{hwmon}"
    write(root, f"{folder}/name", "ina3221\n")
    write(root, f"{folder}/update_interval", "1\n")
    total_ma = 0
    for index, (label, mv, ma) in enumerate(channels, start=1):
        write(root, f"{folder}/in{index}_label", label + "\n")
        write(root, f"{folder}/in{index}_input", f"{mv}\n")
        write(root, f"{folder}/curr{index}_input", f"{ma}\n")
        write(root, f"{folder}/curr{index}_crit", "15600\n")
        write(root, f"{folder}/curr{index}_max", "12480\n")
        write(root, f"{folder}/shunt{index}_resistor", "5000\n")
        write(root, f"{folder}/in{index + 3}_input", f"{ma * 5 // 1000}\n")  # shunt voltage, mV
        if label != "NC":
            total_ma += ma
    # The sum channels: a reader that added them would count the rails twice.
    write(root, f"{folder}/in7_input", f"{total_ma * 5 // 1000}\n")
    write(root, f"{folder}/curr4_input", f"{total_ma}\n")
    write(root, f"{folder}/curr4_crit", "31200\n")
    link = root / f"sys/class/hwmon/hwmon{hwmon}"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(root / folder, link)
    return root / folder


def jetson_nano(root: Path) -> Path:
    """Jetson Nano, JetPack 4: ina3221x at 6-0040, tegrastats, nvpmodel."""
    device_tree(root, "NVIDIA Jetson Nano Developer Kit",
                ["nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210"])
    kernel_release(root, "4.9.337-tegra")
    ina3221x_iio(root, "6-0040", [("POM_5V_IN", 3410, 682, 5000), ("POM_5V_GPU", 493, 98, 5000),
                                  ("POM_5V_CPU", 1314, 262, 5000)])
    thermal_zones(root, [("AO-therm", 29000), ("CPU-therm", 26000), ("GPU-therm", 24000), ("PLL-therm", 24000),
                         ("PMIC-Die", 100000), ("thermal-fan-est", 25250)])
    cpus(root, 4, "schedutil", 1479000)
    scripts.tegrastats(root / "usr/bin/tegrastats", [tegrastats_lines.NANO_JP4])
    scripts.nvpmodel(root / "usr/sbin/nvpmodel", "MAXN", 0)
    write(root, "etc/nvpmodel.conf", "< PM_CONFIG DEFAULT=0 >\n< POWER_MODEL ID=0 NAME=MAXN >\n"
                                     "< POWER_MODEL ID=1 NAME=5W >\n")
    return root


def _orin_thermal(root: Path, cv_online: bool) -> None:
    cv = 45000 if cv_online else -256000  # the Orin Nano's CV zones are offline
    thermal_zones(root, [("cpu-thermal", 46531), ("gpu-thermal", 48218), ("cv0-thermal", cv), ("cv1-thermal", cv),
                         ("cv2-thermal", cv), ("soc0-thermal", 46593), ("soc1-thermal", 48843),
                         ("soc2-thermal", 47312), ("tj-thermal", 48843)])


def orin_nano(root: Path) -> Path:
    """Jetson Orin Nano, JetPack 6: hwmon ina3221 at 1-0040 (VDD_IN 5072 mV x 1124 mA), tegrastats, nvpmodel."""
    device_tree(root, "NVIDIA Jetson Orin Nano Developer Kit",
                ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"])
    kernel_release(root, "5.15.148-tegra")
    ina3221_hwmon(root, "1-0040", 1, [("VDD_IN", 5072, 1124), ("VDD_CPU_GPU_CV", 5064, 164),
                                      ("VDD_SOC", 5064, 320)])
    _orin_thermal(root, cv_online=False)
    cpus(root, 6, "schedutil", 729600)
    scripts.tegrastats(root / "usr/bin/tegrastats", [tegrastats_lines.ORIN_NANO_JP6])
    scripts.nvpmodel(root / "usr/sbin/nvpmodel", "15W", 0)
    write(root, "etc/nvpmodel.conf", "< PM_CONFIG DEFAULT=0 >\n< POWER_MODEL ID=0 NAME=15W >\n"
                                     "< POWER_MODEL ID=1 NAME=7W >\n")
    return root


AGX_ORIN_RAILS = [("VDD_GPU_SOC", 19920, 120), ("VDD_CPU_CV", 19920, 40), ("VIN_SYS_5V0", 4984, 706)]
AGX_ORIN_RAILS_0041 = [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 4992, 60), ("NC", 0, 0)]
AGX_ORIN_W = sum(mv * ma for label, mv, ma in AGX_ORIN_RAILS + AGX_ORIN_RAILS_0041 if label != "NC") / 1e6


def agx_orin(root: Path) -> Path:
    """Jetson AGX Orin, JetPack 6: hwmon ina3221 at 1-0040 and 1-0041 (NC channels), no total rail."""
    device_tree(root, "NVIDIA Jetson AGX Orin Developer Kit",
                ["nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"])
    kernel_release(root, "5.15.148-tegra")
    ina3221_hwmon(root, "1-0040", 1, AGX_ORIN_RAILS)
    ina3221_hwmon(root, "1-0041", 2, AGX_ORIN_RAILS_0041)
    _orin_thermal(root, cv_online=True)
    cpus(root, 12, "schedutil", 2201600)
    scripts.tegrastats(root / "usr/bin/tegrastats", [tegrastats_lines.AGX_ORIN_JP5])
    scripts.nvpmodel(root / "usr/sbin/nvpmodel", "MAXN", 0)
    return root


def raspberry_pi4(root: Path) -> Path:
    """Raspberry Pi 4: model string, one thermal zone, vcgencmd (get_throttled, measure_temp); no power meter."""
    device_tree(root, "Raspberry Pi 4 Model B Rev 1.5", ["raspberrypi,4-model-b", "brcm,bcm2711"])
    kernel_release(root, "6.6.51+rpt-rpi-v8")
    thermal_zones(root, [("cpu-thermal", 48123)])
    cpus(root, 4, "ondemand", 1800000)
    scripts.vcgencmd(root / "usr/bin/vcgencmd", {"get_throttled": RPI_THROTTLED, "measure_temp": "temp=47.2'C\n"})
    return root


def raspberry_pi5(root: Path) -> Path:
    """Raspberry Pi 5: as the Pi 4, plus `vcgencmd pmic_read_adc`."""
    device_tree(root, "Raspberry Pi 5 Model B Rev 1.0", ["raspberrypi,5-model-b", "brcm,bcm2712"])
    kernel_release(root, "6.6.51+rpt-rpi-2712")
    thermal_zones(root, [("cpu-thermal", 52650)])
    cpus(root, 4, "ondemand", 2400000)
    scripts.vcgencmd(root / "usr/bin/vcgencmd", {"get_throttled": RPI_THROTTLED, "measure_temp": "temp=52.1'C\n",
                                                 "pmic_read_adc": PI5_PMIC_READ_ADC})
    return root


def imx8mp(root: Path) -> Path:
    """NXP i.MX 8M Plus EVK: model string, cpu-thermal and soc-thermal zones, no power telemetry."""
    device_tree(root, "NXP i.MX8MPlus EVK board", ["fsl,imx8mp-evk", "fsl,imx8mp"])
    kernel_release(root, "6.6.23-lts-next-gb586a521770e")
    thermal_zones(root, [("cpu-thermal", 42000), ("soc-thermal", 41000)])
    cpus(root, 4, "schedutil", 1800000)
    return root


def rapl_zone(root: Path, zone: str, name: str, energy_uj: int, max_range_uj: int = RAPL_MAX_RANGE_UJ) -> Path:
    """sys/class/powercap/<zone>/{name, energy_uj, max_energy_range_uj}."""
    folder = root / "sys/class/powercap" / zone
    write(root, f"sys/class/powercap/{zone}/name", name + "\n")
    write(root, f"sys/class/powercap/{zone}/energy_uj", f"{energy_uj}\n")
    write(root, f"sys/class/powercap/{zone}/max_energy_range_uj", f"{max_range_uj}\n")
    return folder


def x86_rapl(root: Path) -> Path:
    """An x86 host: DMI identity, CPU model, two thermal zones, RAPL package-0 with core/uncore/dram sub-zones."""
    write(root, "sys/class/dmi/id/sys_vendor", "Dell Inc.\n")
    write(root, "sys/class/dmi/id/product_name", "OptiPlex 7090\n")
    write(root, "proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 165\n"
                                "model name\t: Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz\n")
    kernel_release(root, "6.8.0-45-generic")
    thermal_zones(root, [("acpitz", 27800), ("x86_pkg_temp", 45000), ("acpitz", 29800)])
    cpus(root, 2, "powersave", 2900000)
    write(root, "sys/class/powercap/intel-rapl/enabled", "1\n")
    rapl_zone(root, "intel-rapl:0", "package-0", 123456789)
    rapl_zone(root, "intel-rapl:0:0", "core", 23456789)
    rapl_zone(root, "intel-rapl:0:1", "uncore", 3456789)
    rapl_zone(root, "intel-rapl:0:2", "dram", 456789, 65532610987)
    return root


BOARDS = {"jetson_nano": jetson_nano, "orin_nano": orin_nano, "agx_orin": agx_orin, "raspberry_pi4": raspberry_pi4,
          "raspberry_pi5": raspberry_pi5, "imx8mp": imx8mp, "x86_rapl": x86_rapl}
