"""TI INA260 current/power monitor with its integrated shunt, over I2C.

Registers (big-endian): 0x01 current, signed, 1.25 mA/bit; 0x02 bus voltage,
1.25 mV/bit; 0x03 power, 10 mW/bit; 0xFE manufacturer id 0x5449; 0xFF die id 0x2270.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns, register
from agent.power.i2c import open_bus, read_register, to_signed16

CURRENT = 0x01
BUS_VOLTAGE = 0x02
POWER = 0x03
MANUFACTURER_ID = 0xFE
DIE_ID = 0xFF
TEXAS_INSTRUMENTS = 0x5449
INA260_DIE = 0x2270


def current_a(raw: int) -> float:
    """Current in amperes from register 0x01."""
    return to_signed16(raw) * 1.25e-3


def bus_voltage_v(raw: int) -> float:
    """Bus voltage in volts from register 0x02."""
    return raw * 1.25e-3


def power_w(raw: int) -> float:
    """Power in watts from register 0x03."""
    return raw * 10e-3


@register
class Ina260Meter(Meter):
    """INA260 on /dev/i2c-<bus> (options: bus, address, rate_hz)."""

    name = "ina260"
    kind = "power"

    def __init__(self, root: str = "/", bus: int = 1, address: int = 0x40, rate_hz: float = 100.0,
                 bus_factory: Optional[Callable[[int], Any]] = None) -> None:
        super().__init__(root)
        self.bus_number = int(bus)
        self.address = int(address)
        self.nominal_rate_hz = float(rate_hz)
        self.bus_factory = bus_factory or open_bus
        self.method = f"ina260 0x{self.address:02x} on i2c-{self.bus_number} (external meter, bus V x current)"
        self._bus: Any = None

    def open(self) -> None:
        self._bus = self.bus_factory(self.bus_number)
        where = f"0x{self.address:02x} on i2c-{self.bus_number}"
        try:
            ids = (read_register(self._bus, self.address, MANUFACTURER_ID),
                   read_register(self._bus, self.address, DIE_ID))
        except OSError as exc:
            raise MeterError(f"no INA260 answers at {where}: {exc.strerror}") from exc
        if ids != (TEXAS_INSTRUMENTS, INA260_DIE):
            raise MeterError(f"the device at {where} is not an INA260 (ids 0x{ids[0]:04x}/0x{ids[1]:04x}, "
                             f"expected 0x{TEXAS_INSTRUMENTS:04x}/0x{INA260_DIE:04x})")
        self.sample()

    def sample(self) -> Tuple[int, float]:
        before = now_ns()
        try:
            current_raw = read_register(self._bus, self.address, CURRENT)
            bus_raw = read_register(self._bus, self.address, BUS_VOLTAGE)
        except OSError as exc:
            raise MeterError(f"INA260 0x{self.address:02x} on i2c-{self.bus_number}: {exc.strerror}") from exc
        # V x I (1.25 mV x 1.25 mA steps) rather than the power register's coarse 10 mW steps.
        return (before + now_ns()) // 2, bus_voltage_v(bus_raw) * current_a(current_raw)

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None
