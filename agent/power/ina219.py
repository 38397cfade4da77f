"""TI INA219 current/power monitor over I2C (an external shunt board, e.g. on a Raspberry Pi 3/4).

Registers (big-endian): 0x01 shunt voltage, signed, 10 µV/bit; 0x02 bus voltage,
value >> 3, 4 mV/bit (bit 0: math overflow); 0x03 power, 20 x current_LSB per bit;
0x04 current, signed, current_LSB per bit; 0x05 calibration =
trunc(0.04096 / (current_LSB x R_shunt)). Default addresses 0x40..0x45.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns, register
from agent.power.i2c import open_bus, read_register, to_signed16, write_register

SHUNT_VOLTAGE = 0x01
BUS_VOLTAGE = 0x02
POWER = 0x03
CURRENT = 0x04
CALIBRATION = 0x05


def shunt_voltage_v(raw: int) -> float:
    """Shunt voltage in volts from register 0x01."""
    return to_signed16(raw) * 10e-6


def bus_voltage_v(raw: int) -> float:
    """Bus voltage in volts from register 0x02."""
    return (raw >> 3) * 4e-3


def overflowed(bus_raw: int) -> bool:
    """Bit 0 of register 0x02: the power or current calculation overflowed."""
    return bool(bus_raw & 0x1)


def current_a(raw: int, current_lsb_a: float) -> float:
    """Current in amperes from register 0x04."""
    return to_signed16(raw) * current_lsb_a


def power_w(raw: int, current_lsb_a: float) -> float:
    """Power in watts from register 0x03."""
    return raw * 20.0 * current_lsb_a


def calibration(current_lsb_a: float, shunt_ohm: float) -> int:
    """The calibration register value for a current LSB and a shunt resistance: trunc(0.04096 / (LSB x R))."""
    # The tiny allowance keeps float rounding from truncating an exact 4096 to 4095
    # (the datasheet's own example: 100 µA LSB, 0.1 ohm).
    return int(0.04096 / (current_lsb_a * shunt_ohm) + 1e-9)


@register
class Ina219Meter(Meter):
    """INA219 on /dev/i2c-<bus> (options: bus, address, shunt_ohm, max_current_a, rate_hz)."""

    name = "ina219"
    kind = "power"

    def __init__(self, root: str = "/", bus: int = 1, address: int = 0x40, shunt_ohm: float = 0.1,
                 max_current_a: float = 3.2, rate_hz: float = 100.0,
                 bus_factory: Optional[Callable[[int], Any]] = None) -> None:
        super().__init__(root)
        self.bus_number = int(bus)
        self.address = int(address)
        self.shunt_ohm = float(shunt_ohm)
        # Datasheet: the finest current LSB that still spans max_current_a in 15 bits.
        self.current_lsb_a = float(max_current_a) / 32768.0
        self.nominal_rate_hz = float(rate_hz)
        self.bus_factory = bus_factory or open_bus
        self.method = f"ina219 0x{self.address:02x} on i2c-{self.bus_number} (external shunt meter)"
        self._bus: Any = None

    def open(self) -> None:
        self._bus = self.bus_factory(self.bus_number)
        try:
            write_register(self._bus, self.address, CALIBRATION, calibration(self.current_lsb_a, self.shunt_ohm))
        except OSError as exc:
            raise MeterError(f"no INA219 answers at 0x{self.address:02x} on i2c-{self.bus_number}: "
                             f"{exc.strerror}") from exc
        self.sample()

    def sample(self) -> Tuple[int, float]:
        before = now_ns()
        try:
            bus_raw = read_register(self._bus, self.address, BUS_VOLTAGE)
            power_raw = read_register(self._bus, self.address, POWER)
        except OSError as exc:
            raise MeterError(f"INA219 0x{self.address:02x} on i2c-{self.bus_number}: {exc.strerror}") from exc
        if overflowed(bus_raw):
            raise MeterError(f"INA219 0x{self.address:02x} reports a math overflow: max_current_a or shunt_ohm "
                             "does not match the circuit")
        # The chip computes power from its own current and bus voltage at each conversion.
        return (before + now_ns()) // 2, power_w(power_raw, self.current_lsb_a)

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None
