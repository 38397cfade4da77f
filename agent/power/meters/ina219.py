"""TI INA219 current/power monitor over I2C (an external shunt board, e.g. on a Raspberry Pi 3/4).

Registers (big-endian): 0x01 shunt voltage, signed, 10 µV/bit; 0x02 bus voltage,
value >> 3, 4 mV/bit (bit 0: math overflow); 0x03 power, 20 x current_LSB per bit;
0x04 current, signed, current_LSB per bit; 0x05 calibration =
trunc(0.04096 / (current_LSB x R_shunt)). Default addresses 0x40..0x45.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from agent.power.base import MeterError, register
from agent.power.i2c import I2cMeter, Register

# Current and power bits are worth what the calibration makes them: given when read.
SHUNT_VOLTAGE = Register(0x01, lsb=10e-6, signed=True)  # volts
BUS_VOLTAGE = Register(0x02, lsb=4e-3, shift=3)  # volts; bit 0 the math overflow, bit 1 conversion ready
POWER = Register(0x03)
CURRENT = Register(0x04, signed=True)
CALIBRATION = Register(0x05)


def overflowed(bus_raw: int) -> bool:
    """Bit 0 of register 0x02: the power or current calculation overflowed."""
    return bool(bus_raw & 0x1)


def current_a(raw: int, current_lsb_a: float) -> float:
    """Current in amperes from register 0x04."""
    return CURRENT.value(raw, current_lsb_a)


def power_w(raw: int, current_lsb_a: float) -> float:
    """Power in watts from register 0x03."""
    return POWER.value(raw, 20.0 * current_lsb_a)


def calibration(current_lsb_a: float, shunt_ohm: float) -> int:
    """The calibration register value for a current LSB and a shunt resistance: trunc(0.04096 / (LSB x R))."""
    # The tiny allowance keeps float rounding from truncating an exact 4096 to 4095
    # (the datasheet's own example: 100 µA LSB, 0.1 ohm).
    return int(0.04096 / (current_lsb_a * shunt_ohm) + 1e-9)


@register
class Ina219Meter(I2cMeter):
    """INA219 on /dev/i2c-<bus> (options: bus, address, shunt_ohm, max_current_a, rate_hz)."""

    name = "ina219"
    kind = "power"

    def __init__(self, root: str = "/", bus: int = 1, address: int = 0x40, shunt_ohm: float = 0.1,
                 max_current_a: float = 3.2, rate_hz: float = 100.0,
                 bus_factory: Optional[Callable[[int], Any]] = None) -> None:
        super().__init__(root, bus, address, rate_hz, bus_factory)
        self.shunt_ohm = float(shunt_ohm)
        # Datasheet: the finest current LSB that still spans max_current_a in 15 bits.
        self.current_lsb_a = float(max_current_a) / 32768.0
        self.method = f"ina219 {self.where} (external shunt meter)"

    def configure(self) -> None:
        self.write_word(CALIBRATION, calibration(self.current_lsb_a, self.shunt_ohm))

    def sample(self) -> Tuple[int, float]:
        stamp, (bus_raw, power_raw) = self.read(BUS_VOLTAGE, POWER)
        if overflowed(bus_raw):
            raise MeterError(f"INA219 0x{self.address:02x} reports a math overflow: max_current_a or shunt_ohm "
                             "does not match the circuit")
        # The chip computes power from its own current and bus voltage at each conversion.
        return stamp, power_w(power_raw, self.current_lsb_a)
