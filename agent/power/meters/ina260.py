"""TI INA260 current/power monitor with its integrated shunt, over I2C.

Registers (big-endian): 0x01 current, signed, 1.25 mA/bit; 0x02 bus voltage,
1.25 mV/bit; 0x03 power, 10 mW/bit; 0xFE manufacturer id 0x5449; 0xFF die id 0x2270.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from agent.power.base import MeterError, register
from agent.power.i2c import I2cMeter, Register

CURRENT = Register(0x01, lsb=1.25e-3, signed=True)  # amperes
BUS_VOLTAGE = Register(0x02, lsb=1.25e-3)  # volts
POWER = Register(0x03, lsb=10e-3)  # watts
MANUFACTURER_ID = Register(0xFE)
DIE_ID = Register(0xFF)
TEXAS_INSTRUMENTS = 0x5449
INA260_DIE = 0x2270


@register
class Ina260Meter(I2cMeter):
    """INA260 on /dev/i2c-<bus> (options: bus, address, rate_hz)."""

    name = "ina260"
    kind = "power"

    def __init__(self, root: str = "/", bus: int = 1, address: int = 0x40, rate_hz: float = 100.0,
                 bus_factory: Optional[Callable[[int], Any]] = None) -> None:
        super().__init__(root, bus, address, rate_hz, bus_factory)
        self.method = f"ina260 {self.where} (external meter, bus V x current)"

    def configure(self) -> None:
        ids = (self.word(MANUFACTURER_ID), self.word(DIE_ID))
        if ids != (TEXAS_INSTRUMENTS, INA260_DIE):
            raise MeterError(f"the device at {self.where} is not an INA260 (ids 0x{ids[0]:04x}/0x{ids[1]:04x}, "
                             f"expected 0x{TEXAS_INSTRUMENTS:04x}/0x{INA260_DIE:04x})")

    def sample(self) -> Tuple[int, float]:
        stamp, (current_raw, bus_raw) = self.read(CURRENT, BUS_VOLTAGE)
        # V x I (1.25 mV x 1.25 mA steps) rather than the power register's coarse 10 mW steps.
        return stamp, BUS_VOLTAGE.value(bus_raw) * CURRENT.value(current_raw)
