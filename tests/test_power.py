"""Power meters, auto-detection, the sampler and energy integration, against fake boards.

Fakes stand in only for the absent hardware (sysfs trees, board tools as scripts,
serial meters behind a real pty, an I2C register file); every meter, the
sampler and the integration are the real code.
"""

from __future__ import annotations

import json
import math
import os
import pkgutil
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import agent.power.meters
from agent.power import METERS, MeterError, PowerSampler, create, detect, spec_problem
from agent.power.base import METER_MODULES, Meter, meter_class, now_ns, register
from agent.power.energy import counter_window, power_window
from agent.power.i2c import swap16, to_signed16
from agent.power.meters import ina219, ina260, rapl, rpi_pmic, smartpower2, smartpower3, tegrastats
from agent.power.sampler import summarize
from tests.support.fakes import boards, scripts, tegrastats_lines
from tests.support.fakes.i2c import FakeIna219, FakeIna260
from tests.support.fakes.meters import FunctionMeter
from tests.support.fakes.serial_pty import PtyMeter, sp2_line, sp3_line

# --- the registry -----------------------------------------------------------------------------------------------

def test_every_backend_module_registers_one_meter():
    files = {m.name for m in pkgutil.iter_modules(agent.power.meters.__path__)}
    assert {name: f"agent.power.meters.{name}" for name in files} == METER_MODULES
    assert METERS.names() == sorted(files)
    meters = METERS.load_all()
    for module in METER_MODULES.values():
        assert [cls for cls in meters.values() if cls.__module__ == module] == [meters[module.rsplit(".", 1)[1]]]
    for name, cls in meters.items():
        assert cls.name == name and cls.kind in ("power", "energy", "none")


def test_importing_the_package_imports_no_meter_and_nothing_optional():
    code = ("import json, sys, agent.power; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('agent.power.meters.', 'numpy', "
            "'onnxruntime', 'serial', 'smbus2')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert json.loads(done.stdout) == []


def test_detect_imports_only_the_meters_it_probes(board):
    code = ("import json, sys, agent.power; agent.power.detect(sys.argv[1]); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('agent.power.meters.'))))")
    done = subprocess.run([sys.executable, "-c", code, board("raspberry_pi5")], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    # tegrastats takes two constants from ina3221; rapl, after rpi_pmic in the order, is never reached.
    assert json.loads(done.stdout) == ["agent.power.meters.ina3221", "agent.power.meters.rpi_pmic",
                                       "agent.power.meters.tegrastats"]


def test_the_registry_refuses_duplicates_unknown_types_and_unknown_options():
    class Again(Meter):
        name = "ina3221"

    class Nameless(Meter):
        pass

    class Odd(Meter):
        name = "odd"
        kind = "voltage"

    with pytest.raises(ValueError, match="registered twice"):
        register(Again)
    with pytest.raises(ValueError, match="has no name"):
        register(Nameless)
    with pytest.raises(ValueError, match="has kind 'voltage'"):
        register(Odd)
    assert "odd" not in METERS
    with pytest.raises(MeterError, match="unknown power meter type 'auto'; known: command, estimate, "):
        meter_class("auto")
    with pytest.raises(MeterError, match="unknown power meter type 'wattmeter'"):
        create({"type": "wattmeter"})
    with pytest.raises(MeterError, match=r"unknown option\(s\) \['baudrate'\]"):
        create({"type": "smartpower3", "baudrate": 9600})
    with pytest.raises(MeterError, match="needs a 'type'"):
        create({"port": "/dev/ttyUSB0"})
    with pytest.raises(MeterError, match=r"'auto' takes no options, got \['port'\]"):
        create({"type": "auto", "port": "/dev/ttyUSB0"})


@pytest.mark.parametrize("spec", [{"type": "ina3221"}, {"type": "smartpower3", "port": "/dev/ttyUSB0"},
                                  {"type": "auto"}, {"type": "ina219", "address": 0x41, "shunt_ohm": 0.01}])
def test_a_usable_spec_has_no_problem(spec):
    assert spec_problem(spec) is None


@pytest.mark.parametrize("spec, problem", [
    ({"type": "wattmeter"}, "unknown power meter type 'wattmeter'; known: auto, command, estimate, hwmon, "),
    ({"type": "smartpower3", "baudrate": 9600},
     "power meter 'smartpower3': unknown option(s) ['baudrate']; it takes ['port', 'baud', 'channel', "),
    ({"type": "auto", "port": "/dev/ttyUSB0"}, "power meter 'auto' takes no options, got ['port']"),
    ({"port": "/dev/ttyUSB0"}, "a power meter spec needs a 'type' key, got {'port': '/dev/ttyUSB0'}"),
    ("ina3221", "a power meter spec needs a 'type' key, got 'ina3221'"),
    (["ina3221"], "a power meter spec needs a 'type' key, got ['ina3221']"),
    ({"type": 3221}, "a power meter spec's 'type' must be a string, got 3221"),
])
def test_spec_problem_names_the_bad_type_or_option_in_one_line(spec, problem):
    found = spec_problem(spec)
    assert found is not None and found.startswith(problem) and "\n" not in found
    with pytest.raises(MeterError) as raised:
        create(spec)
    assert str(raised.value) == found


def test_spec_problem_opens_no_hardware():
    # A port that does not exist: checking the spec must not try it (opening it fails, see below).
    assert spec_problem({"type": "smartpower3", "port": "/dev/ttyNOPE"}) is None
    assert spec_problem({"type": "ina260", "bus": 99}) is None


@pytest.mark.parametrize("name, expected", [
    ("jetson_nano", "ina3221"), ("orin_nano", "ina3221"), ("agx_orin", "ina3221"), ("raspberry_pi5", "rpi_pmic"),
    ("raspberry_pi4", "none"), ("imx8mp", "none"), ("x86_rapl", "rapl"),
])
def test_auto_picks_the_right_meter_on_each_board(board, name, expected):
    root = board(name)
    assert detect(root)["type"] == expected
    assert create({"type": "auto"}, root).name == expected


def test_auto_falls_back_to_tegrastats_when_the_sysfs_monitor_is_hidden(board):
    root = board("orin_nano")
    shutil.rmtree(os.path.join(root, "sys/bus/i2c/drivers/ina3221"))
    assert detect(root) == {"type": "tegrastats", "command": os.path.join(root, "usr/bin/tegrastats")}


# --- Jetson INA3221 in sysfs ------------------------------------------------------------------------------------

def test_ina3221_jetpack4_reads_the_board_input_in_mw(board):
    with create({"type": "ina3221"}, board("jetson_nano")) as meter:
        stamp, watts = meter.sample()
        assert watts == pytest.approx(3.410)
        assert meter.method == "ina3221 POM_5V_IN (board input)"
        assert abs(stamp - now_ns()) < 1e9


def test_ina3221_jetpack6_multiplies_volts_and_amps(board):
    root = board("orin_nano")
    with create({"type": "ina3221"}, root) as meter:
        assert meter.sample()[1] == pytest.approx(5.700928)  # 5072 mV x 1124 mA
        assert meter.method == "ina3221 VDD_IN (board input)"
    with create({"type": "ina3221", "rail": "VDD_SOC"}, root) as meter:
        assert meter.sample()[1] == pytest.approx(5064 * 320 / 1e6)
    with pytest.raises(MeterError, match="no rail 'VDD_GPU'"):
        create({"type": "ina3221", "rail": "VDD_GPU"}, root).open()


def test_ina3221_follows_the_files_as_they_change(board):
    root = board("orin_nano")
    folder = Path(root, "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1")
    with create({"type": "ina3221"}, root) as meter:
        (folder / "curr1_input").write_text("2000\n")
        assert meter.sample()[1] == pytest.approx(5072 * 2000 / 1e6)


def test_agx_orin_sums_its_rails_skipping_nc_and_the_sum_channels(board):
    with create({"type": "ina3221"}, board("agx_orin")) as meter:
        assert meter.sample()[1] == pytest.approx(boards.AGX_ORIN_W)
        assert meter.method == ("ina3221 sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO "
                                "(module rails; carrier board not included)")


def test_ina3221_on_a_board_without_one_says_where_it_looked(board):
    with pytest.raises(MeterError, match="no INA3221 rails under"):
        create({"type": "ina3221"}, board("raspberry_pi4")).open()


# --- tegrastats -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("generation", sorted(tegrastats_lines.EXPECTED))
def test_tegrastats_lines_of_every_generation(generation, tmp_path):
    line, expected_w, words = tegrastats_lines.EXPECTED[generation]
    rails = tegrastats.parse_rails_mw(line)
    assert "RAM" not in rails and "SWAP" not in rails and "NC" not in rails
    assert tegrastats.total_w(rails) == (pytest.approx(expected_w), words)
    command = scripts.tegrastats(tmp_path / "tegrastats", [line])
    with create({"type": "tegrastats", "command": str(command), "interval_ms": 10}) as meter:
        assert meter.sample()[1] == pytest.approx(expected_w)
        assert meter.method == f"tegrastats {words}"


def test_tegrastats_meter_runs_the_tool_at_its_interval(board):
    meter = create({"type": "tegrastats", "interval_ms": 20}, board("orin_nano"))
    with meter:
        stamps = []
        for _ in range(5):
            stamp, watts = meter.sample()
            assert watts == pytest.approx(5.704)
            stamps.append(stamp)
        assert meter.method == "tegrastats VDD_IN (board input)"
        assert meter.nominal_rate_hz == 50.0
    gaps_ms = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(5 < gap < 200 for gap in gaps_ms), gaps_ms


def test_tegrastats_without_power_rails_says_so(tmp_path):
    command = scripts.tegrastats(tmp_path / "tegrastats", ["RAM 2461/3964MB (lfb 2x4MB) CPU [52%@1479] EMC_FREQ 0%"])
    with pytest.raises(MeterError, match="only when it runs as root"):
        create({"type": "tegrastats", "command": str(command), "interval_ms": 10}).open()


# --- generic hwmon ----------------------------------------------------------------------------------------------

def test_hwmon_reads_power_input_or_a_volt_amp_pair(board, tmp_path):
    with create({"type": "hwmon", "device": "ina3221"}, board("orin_nano")) as meter:
        assert meter.sample()[1] == pytest.approx(5.700928)
        assert meter.method.startswith("hwmon ina3221 in1_input x curr1_input")
    root = tmp_path / "ina226-host"
    boards.write(root, "sys/class/hwmon/hwmon0/name", "ina226\n")
    boards.write(root, "sys/class/hwmon/hwmon0/in1_input", "12000\n")
    boards.write(root, "sys/class/hwmon/hwmon0/curr1_input", "500\n")
    boards.write(root, "sys/class/hwmon/hwmon0/power1_input", "6000000\n")  # µW
    with create({"type": "hwmon", "device": "ina226"}, str(root)) as meter:
        assert meter.sample()[1] == pytest.approx(6.0)
    with pytest.raises(MeterError, match="no hwmon device 'ina219'"):
        create({"type": "hwmon", "device": "ina219"}, str(root)).open()


def test_hwmon_energy_counter_and_its_wrap(tmp_path):
    counter = boards.write(tmp_path, "sys/class/hwmon/hwmon3/energy1_input", "1000000\n")
    boards.write(tmp_path, "sys/class/hwmon/hwmon3/name", "amd_energy\n")
    with create({"type": "hwmon_energy", "device": "amd_energy"}, str(tmp_path)) as meter:
        counter.write_text("3500000\n")
        assert meter.read_energy_j()[1] == pytest.approx(2.5)
        counter.write_text("10\n")
        with pytest.raises(MeterError, match="went backwards"):
            meter.read_energy_j()
    with create({"type": "hwmon_energy", "device": "amd_energy", "wrap_uj": 2**32}, str(tmp_path)) as meter:
        counter.write_text(f"{2**32 - 1000}\n")
        assert meter.read_energy_j()[1] == pytest.approx((2**32 - 1010) / 1e6)


# --- RAPL -------------------------------------------------------------------------------------------------------

def test_rapl_reads_package_energy_and_undoes_a_wrap(board):
    root = board("x86_rapl")
    counter = Path(root, "sys/class/powercap/intel-rapl:0/energy_uj")
    counter.write_text(f"{boards.RAPL_MAX_RANGE_UJ - 1_000_000}\n")
    with create({"type": "rapl"}, root) as meter:
        assert meter.method == "rapl package-0 (CPU package only)"
        counter.write_text(f"{boards.RAPL_MAX_RANGE_UJ - 250_000}\n")
        assert meter.read_energy_j()[1] == pytest.approx(0.75)
        counter.write_text("500000\n")  # wrapped: 250000 µJ to the top, then 500000
        assert meter.read_energy_j()[1] == pytest.approx(1.5)
    assert rapl.unwrap_delta_uj(262143000000, 500000, boards.RAPL_MAX_RANGE_UJ) == 828850
    with create({"type": "rapl", "zones": ["dram"]}, root) as meter:
        assert meter.method == "rapl dram (DRAM only)"


def _open_rapl_as(uid: int, root: str) -> str:
    """Open the RAPL meter in a child process running as `uid`; the MeterError text (or 'opened')."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, try, report, leave without running pytest's teardown
        message = "opened"
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            create({"type": "rapl"}, root).open()
        except MeterError as exc:
            message = str(exc)
        except BaseException as exc:  # reported to the parent, which fails the test with it
            message = f"unexpected {exc!r}"
        finally:
            os.write(write_end, message.encode())
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_rapl_not_readable_by_this_user_says_how_to_fix_it():
    # A real permission denial: as root, a child process drops to `nobody` (root reads anything).
    top = tempfile.mkdtemp(prefix="orch-rapl-")
    try:
        root = boards.x86_rapl(Path(top))
        counter = root / "sys/class/powercap/intel-rapl:0/energy_uj"
        for folder, _, _ in os.walk(top):
            os.chmod(folder, 0o755)
        os.chmod(counter, stat.S_IRUSR)
        message = (_open_rapl_as(65534, str(root)) if os.geteuid() == 0
                   else _open_directly(str(root)))
    finally:
        shutil.rmtree(top)
    assert message.startswith(f"cannot read {counter}: permission denied"), message
    assert "CVE-2020-8694" in message and "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in message
    assert "udev" in message and "root" in message


def _open_directly(root: str) -> str:
    try:
        create({"type": "rapl"}, root).open()
    except MeterError as exc:
        return str(exc)
    return "opened"


# --- INA219 and INA260 over I2C ---------------------------------------------------------------------------------

def test_i2c_words_are_byte_swapped_and_signed():
    assert swap16(0x1234) == 0x3412 and swap16(swap16(0xBEEF)) == 0xBEEF
    assert to_signed16(0x7FFF) == 32767 and to_signed16(0x8000) == -32768 and to_signed16(0xFFFF) == -1


def test_ina219_register_decoding():
    assert ina219.SHUNT_VOLTAGE.value(0x0FA0) == pytest.approx(0.040)  # 4000 x 10 µV
    assert ina219.SHUNT_VOLTAGE.value(0x8300) == pytest.approx(-0.320)  # -32000 x 10 µV: the PGA /8 floor
    assert ina219.BUS_VOLTAGE.value(0x5DC2) == pytest.approx(12.0)     # 3000 << 3, CNVR set: 3000 x 4 mV
    assert ina219.overflowed(0x5DC3) and not ina219.overflowed(0x5DC2)
    assert ina219.current_a(0x0800, 1e-4) == pytest.approx(0.2048)
    assert ina219.current_a(0xF800, 1e-4) == pytest.approx(-0.2048)
    assert ina219.power_w(100, 1e-4) == pytest.approx(0.2)             # 20 x current_LSB per bit
    assert ina219.calibration(1e-4, 0.1) == 4096                       # the datasheet's example
    assert ina219.calibration(3.2 / 32768, 0.1) == 4194


def test_ina219_meter_calibrates_then_reads_power():
    chip = FakeIna219(volts=5.0, amps=1.2, shunt_ohm=0.1)
    meter = create({"type": "ina219", "bus": 1, "address": 0x40, "shunt_ohm": 0.1, "max_current_a": 3.2,
                    "bus_factory": lambda number: chip})
    with meter:
        assert chip.registers[0x05] == 4194
        assert meter.sample()[1] == pytest.approx(6.0, rel=2e-3)
    assert chip.closed
    with pytest.raises(MeterError, match="no INA219 answers at 0x41"):
        create({"type": "ina219", "address": 0x41, "bus_factory": lambda n: FakeIna219(5.0, 1.0, 0.1)}).open()


def test_ina260_register_decoding_and_meter():
    assert ina260.CURRENT.value(0x0320) == pytest.approx(1.0)   # 800 x 1.25 mA
    assert ina260.CURRENT.value(0xFCE0) == pytest.approx(-1.0)
    assert ina260.BUS_VOLTAGE.value(0x2580) == pytest.approx(12.0)  # 9600 x 1.25 mV
    assert ina260.POWER.value(1200) == pytest.approx(12.0)  # 10 mW per bit
    with create({"type": "ina260", "bus_factory": lambda n: FakeIna260(12.0, 0.5)}) as meter:
        assert meter.sample()[1] == pytest.approx(6.0)
    with pytest.raises(MeterError, match="is not an INA260"):
        create({"type": "ina260", "bus_factory": lambda n: FakeIna260(12.0, 0.5, die_id=0x2260)}).open()


# --- ODROID SmartPower over a real pseudo-terminal --------------------------------------------------------------

SP3_REFERENCE = ["0000012345,15062,0412,06205,0,05102,1021,05209,1,00,00000,0000,00000,0,00,0e,10",
                 "0000012355,15060,0430,06476,0,05101,1069,05453,1,00,00000,0000,00000,0,00,f9,17"]


def test_smartpower3_lines_and_checks_match_the_reference():
    assert sp3_line(12345, 15062, 412, 5102, 1021, in_mw=6205, ch0_mw=5209).rstrip("\r\n") == SP3_REFERENCE[0]
    assert sp3_line(12355, 15060, 430, 5101, 1069, in_mw=6476, ch0_mw=5453).rstrip("\r\n") == SP3_REFERENCE[1]
    first = smartpower3.parse_line(SP3_REFERENCE[0])
    assert first is not None and first["in_mW"] == 6205 and first["ch0_mW"] == 5209
    assert smartpower3.parse_line(SP3_REFERENCE[1].replace(",f9,", ",f8,")) is None   # checksum8 wrong
    assert smartpower3.parse_line(SP3_REFERENCE[1].replace(",17", ",16")) is None     # xor8 wrong
    assert smartpower3.parse_line(SP3_REFERENCE[1].replace("05453", "05454")) is None  # a corrupted digit
    assert smartpower3.parse_line("SmartPower3 v2.1") is None


def test_smartpower3_meter_drops_and_counts_lines_with_bad_checks():
    good_a = sp3_line(100, 15062, 412, 5102, 1021, in_mw=6205, ch0_mw=5209)
    good_b = sp3_line(110, 15060, 430, 5101, 1069, in_mw=6476, ch0_mw=5453)
    bad = sp3_line(105, 15061, 420, 5101, 1050, bad_checksum=True)
    with PtyMeter([good_a, bad, bad, good_b, bad, good_a], interval_s=0.02, repeat=False, start_after_s=0.3) as pty:
        meter = create({"type": "smartpower3", "port": pty.port, "log_interval_ms": 20})
        with meter:  # open() reads the first good line
            assert meter.sample()[1] == pytest.approx(5.453)
            assert meter.dropped_lines == 2
            assert meter.sample()[1] == pytest.approx(5.209)
            assert meter.dropped_lines == 3
        assert meter.method == "smartpower3 ch0 (channel 0 output: the board's supply)"
    input_meter = smartpower3.SmartPower3Meter(channel="input")
    assert "plus the SmartPower3 itself" in input_meter.method


def test_smartpower2_skips_its_boot_banner():
    assert sp2_line(5.102, 0.312, 0.004) == "5.102,0.312,1.592,0.004\r\n"  # the reference's line
    assert smartpower2.parse_line("5.102,0.312,1.592,0.004") == (5.102, 0.312, 1.592, 0.004)
    lines = ["\r\n", "SmartPower2 ready\r\n", "WiFi: connecting...\r\n", sp2_line(5.102, 0.312, 0.004),
             sp2_line(5.098, 0.401, 0.005)]
    with PtyMeter(lines, interval_s=0.02, repeat=False, start_after_s=0.3) as pty, \
            create({"type": "smartpower2", "port": pty.port}) as meter:
        assert meter.dropped_lines == 3
        assert meter.sample()[1] == pytest.approx(2.044)
        assert meter.nominal_rate_hz == 1.0


def test_a_serial_port_that_is_not_there_is_named():
    with pytest.raises(MeterError, match="cannot open serial port /dev/ttyNOPE"):
        create({"type": "smartpower3", "port": "/dev/ttyNOPE"}).open()


# --- Raspberry Pi 5 PMIC, a user command, the estimate, none -------------------------------------------------

def test_pi5_pmic_sums_rails_with_both_current_and_voltage(board):
    rails = rpi_pmic.parse_pmic("  " + boards.PI5_PMIC_READ_ADC.replace("\n", "\n   "))  # alignment spaces too
    assert set(rails) == {"VDD_CORE", "EXT5V", "BATT"}
    assert rpi_pmic.pmic_power_w(rails) == pytest.approx(1.11625 * 0.74944980)
    with create({"type": "auto"}, board("raspberry_pi5")) as meter:
        assert meter.sample()[1] == pytest.approx(boards.PI5_PMIC_W)
        assert meter.method == "vcgencmd pmic_read_adc (SoC rails, not wall power)"


def test_pmic_meter_on_a_pi4_fails_clearly(board):
    root = board("raspberry_pi4")
    with pytest.raises(MeterError, match="Pi 5 only"):
        create({"type": "rpi_pmic"}, root).open()


def test_command_meter_reads_watts_and_skips_other_lines(tmp_path):
    program = scripts.watts_printer(tmp_path / "watts", ["4.5", "calibrating...", "4.75"], interval_s=0.01)
    with create({"type": "command", "command": str(program), "rate_hz": 100}) as meter:
        readings = [meter.sample()[1] for _ in range(6)]
        assert set(readings) <= {4.5, 4.75} and meter.dropped_lines >= 2
        assert meter.method == f"command: {program} (watts as the program prints them)"


def test_estimate_is_cpu_time_times_watts_and_never_a_measurement():
    with create({"type": "estimate", "watts": 5.0}) as meter:
        assert meter.kind == "energy" and not meter.is_measurement
        assert meter.method == "estimate: cpu time x 5.0 W (not a measurement)"
        cpu0 = time.process_time()
        _, energy0 = meter.read_energy_j()
        while time.process_time() - cpu0 < 0.05:
            pass
        _, energy1 = meter.read_energy_j()
        cpu_s = time.process_time() - cpu0
    assert energy1 - energy0 == pytest.approx(cpu_s * 5.0, rel=0.1)


def test_none_reports_nothing_measured():
    sampler = PowerSampler(create({"type": "none"}))
    sampler.start()
    sampler.mark_start()
    sampler.mark_end()
    result = sampler.finish(inferences=100)
    assert result["method"] == "none (no power meter)" and result["measured"] is False
    assert result["energy_j"] is None and result["reasons"] == []


# --- energy inside a window: pure integration -------------------------------------------------------------------

def test_a_sampled_sine_integrates_to_its_analytic_energy():
    period_s, mean_w, amplitude_w = 0.37, 5.0, 2.0

    def watts(t: float) -> float:
        return mean_w + amplitude_w * math.sin(2 * math.pi * t / period_s)

    def energy(t: float) -> float:  # the antiderivative
        return mean_w * t - amplitude_w * period_s / (2 * math.pi) * math.cos(2 * math.pi * t / period_s)

    times_ns = [i * 10_000_000 for i in range(201)]  # 100 Hz for 2 s
    values = [watts(t / 1e9) for t in times_ns]
    start_ns, end_ns = 123_456_789, 1_876_543_210  # edges between samples
    window = power_window(times_ns, values, start_ns, end_ns)
    expected = energy(end_ns / 1e9) - energy(start_ns / 1e9)
    assert window.energy_j == pytest.approx(expected, rel=0.01)
    assert window.samples == 175 and window.problems == []


def test_a_step_profile_integrates_exactly():
    times_ns = [i * 10_000_000 for i in range(101)]  # 100 Hz for 1 s; 2 W, then 6 W from t = 0.505 s
    values = [2.0 if t < 505_000_000 else 6.0 for t in times_ns]
    window = power_window(times_ns, values, 250_000_000, 750_000_000)
    # Exact value is 0.255 s x 2 W + 0.245 s x 6 W; the trapezoid spreads the step over the one gap it falls in.
    assert window.energy_j == pytest.approx(0.255 * 2 + 0.245 * 6, rel=0.01)
    assert window.max_w == 6.0


def test_window_edges_are_interpolated_not_rounded_to_samples():
    times_ns = [0, 1_000_000_000, 2_000_000_000, 3_000_000_000]
    ramp_w = [0.0, 10.0, 20.0, 30.0]  # P = 10 W/s x t
    window = power_window(times_ns, ramp_w, 500_000_000, 2_500_000_000)
    assert window.energy_j == pytest.approx(5 * (2.5**2 - 0.5**2))  # 30 J; whole samples alone would give 15
    assert window.samples == 2 and window.max_w == 20.0
    between = power_window(times_ns, ramp_w, 1_200_000_000, 1_700_000_000)
    assert between.energy_j == pytest.approx(5 * (1.7**2 - 1.2**2)) and between.samples == 0
    early = power_window(times_ns, ramp_w, -500_000_000, 1_000_000_000)
    assert early.problems == ["power samples start 500.0 ms after the window starts"]


def test_counter_window_differences_at_the_edges():
    times_ns = [0, 1_000_000_000, 2_000_000_000]
    joules = [0.0, 3.0, 10.0]
    window = counter_window(times_ns, joules, 0, 2_000_000_000)
    assert window.energy_j == 10.0 and window.max_w == pytest.approx(7.0) and window.samples == 3


def test_a_window_of_fewer_than_ten_samples_is_flagged():
    times_ns = [i * 100_000_000 for i in range(20)]
    result = summarize("power", times_ns, [4.0] * 20, (250_000_000, 850_000_000), (0, 200_000_000), inferences=6)
    assert result["samples"] == 6
    assert result["reasons"] == ["power window holds 6 samples, fewer than 10"]
    assert result["energy_j"] == pytest.approx(2.4) and result["mean_w"] == pytest.approx(4.0)
    assert result["energy_per_inference_mj"] == pytest.approx(400.0)
    assert result["idle_w"] == pytest.approx(4.0) and result["energy_per_inference_net_mj"] == pytest.approx(0.0)


# --- the sampler, on a live thread ------------------------------------------------------------------------------

def test_sampler_integrates_a_live_sine_within_one_percent():
    period_s = 0.25

    def watts(t: float) -> float:
        return 5.0 + 2.0 * math.sin(2 * math.pi * t / period_s)

    def energy(t: float) -> float:
        return 5.0 * t - 2.0 * period_s / (2 * math.pi) * math.cos(2 * math.pi * t / period_s)

    epoch = now_ns()
    meter = FunctionMeter(watts, epoch, rate_hz=200.0)
    sampler = PowerSampler(meter, idle_s=0.2)
    sampler.start()
    start_ns = sampler.mark_start()
    time.sleep(0.6)
    end_ns = sampler.mark_end()
    result = sampler.finish(inferences=120)
    assert meter.opened and meter.closed
    seconds = [(t - epoch) / 1e9 for t in (start_ns, end_ns)]
    expected_j = energy(seconds[1]) - energy(seconds[0])
    assert result["energy_j"] == pytest.approx(expected_j, rel=0.01)
    assert result["window_s"] == pytest.approx(seconds[1] - seconds[0])
    assert result["samples"] >= 10 and result["reasons"] == []
    idle_from, idle_to = ((t - epoch) / 1e9 for t in sampler.idle_window)
    assert result["idle_w"] == pytest.approx((energy(idle_to) - energy(idle_from)) / (idle_to - idle_from), rel=0.01)
    assert result["energy_per_inference_mj"] == pytest.approx(result["energy_j"] * 1e3 / 120)
    net_j = result["energy_j"] - result["idle_w"] * result["window_s"]
    assert result["energy_per_inference_net_mj"] == pytest.approx(net_j * 1e3 / 120)
    assert 3.0 <= result["max_w"] <= 7.0 and result["measured"] is True
    # A sine's window mean may fall below its idle mean: within the idle noise, noted in the method, never flagged.
    assert result["method"].startswith(meter.method)
    assert 100 < result["rate_hz"] <= 210


def test_sampler_flags_a_window_too_short_for_the_meter():
    meter = FunctionMeter(lambda t: 3.0, now_ns(), rate_hz=20.0)
    sampler = PowerSampler(meter, idle_s=0.0)
    sampler.start()
    sampler.mark_start()
    time.sleep(0.12)  # room for about 2 samples at 20 Hz
    sampler.mark_end()
    result = sampler.finish(inferences=10)
    assert result["samples"] < 10
    assert f"power window holds {result['samples']} samples, fewer than 10" in result["reasons"]
    assert result["energy_j"] == pytest.approx(3.0 * result["window_s"])
    assert result["idle_w"] is None and result["energy_per_inference_net_mj"] is None


def test_sampler_reads_an_energy_counter_at_the_window_edges():
    sampler = PowerSampler(create({"type": "estimate", "watts": 4.0}), idle_s=0.05)
    sampler.start()
    cpu0 = time.process_time()
    sampler.mark_start()
    while time.process_time() - cpu0 < 0.2:
        pass
    sampler.mark_end()
    cpu_s = time.process_time() - cpu0
    result = sampler.finish(inferences=50)
    assert result["energy_j"] == pytest.approx(4.0 * cpu_s, rel=0.05)
    assert result["measured"] is False and result["method"].startswith("estimate:")


def test_sampler_with_tegrastats_on_a_fake_orin(board):
    meter = create({"type": "tegrastats", "interval_ms": 20}, board("orin_nano"))
    sampler = PowerSampler(meter, idle_s=0.1)
    sampler.start()
    sampler.mark_start()
    time.sleep(0.5)
    sampler.mark_end()
    result = sampler.finish(inferences=100)
    assert result["samples"] >= 10 and result["reasons"] == []
    assert result["mean_w"] == pytest.approx(5.704) and result["idle_w"] == pytest.approx(5.704)
    assert result["energy_per_inference_net_mj"] == pytest.approx(0.0, abs=1e-9)


def test_sampler_with_a_smartpower3_dropping_bad_lines():
    good = sp3_line(100, 15062, 412, 5102, 1021, in_mw=6205, ch0_mw=5209)
    bad = sp3_line(105, 15061, 420, 5101, 1050, bad_checksum=True)
    with PtyMeter([good, bad], interval_s=0.01) as pty:
        sampler = PowerSampler(create({"type": "smartpower3", "port": pty.port, "log_interval_ms": 20}), idle_s=0.1)
        sampler.start()
        sampler.mark_start()
        time.sleep(0.4)
        sampler.mark_end()
        result = sampler.finish(inferences=10)
    assert result["mean_w"] == pytest.approx(5.209) and result["samples"] >= 10
    assert result["dropped_lines"] >= 5 and result["reasons"] == []


def test_a_meter_failing_mid_run_is_a_reason_not_a_crash(tmp_path):
    root = tmp_path / "orin"
    root.mkdir()
    boards.orin_nano(root)
    meter = create({"type": "ina3221", "rate_hz": 100}, str(root))
    sampler = PowerSampler(meter, idle_s=0.0)
    sampler.start()
    sampler.mark_start()
    Path(root, "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/in1_input").write_text("garbage\n")
    time.sleep(0.05)
    sampler.mark_end()
    result = sampler.finish(inferences=1)
    assert any(r.startswith("power meter failed during the run:") and "does not hold an integer" in r
               for r in result["reasons"]), result["reasons"]
