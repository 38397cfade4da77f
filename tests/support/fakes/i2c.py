"""INA219 and INA260 at register level behind a fake SMBus (the bus is the absent part, not the logic).

Registers hold big-endian 16-bit values as the chips do; SMBus word reads and
writes are little-endian, so they are byte-swapped here as on a real bus. The
INA219's current and power registers follow its datasheet:
current = shunt x calibration / 4096, power = current x bus / 5000.
"""

from __future__ import annotations


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


class FakeInaBus:
    """smbus2.SMBus's word interface over one chip's register file."""

    def __init__(self, address: int, registers: dict[int, int]) -> None:
        self.address = address
        self.registers = dict(registers)
        self.closed = False

    def read_word_data(self, address: int, register: int) -> int:
        if address != self.address:
            raise OSError(121, "Remote I/O error")  # what Linux returns when nothing acknowledges
        self.update()
        return _swap(self.registers[register] & 0xFFFF)

    def write_word_data(self, address: int, register: int, value: int) -> None:
        if address != self.address:
            raise OSError(121, "Remote I/O error")
        self.registers[register] = _swap(value)

    def update(self) -> None:
        """Recompute derived registers (none for a plain register file)."""

    def close(self) -> None:
        self.closed = True


class FakeIna219(FakeInaBus):
    """An INA219 measuring `amps` through `shunt_ohm` at `volts` on the bus."""

    def __init__(self, volts: float, amps: float, shunt_ohm: float, address: int = 0x40) -> None:
        shunt_raw = round(amps * shunt_ohm / 10e-6) & 0xFFFF
        bus_raw = (round(volts / 4e-3) << 3) | 0x2  # bit 1: conversion ready
        super().__init__(address, {0x00: 0x399F, 0x01: shunt_raw, 0x02: bus_raw, 0x03: 0, 0x04: 0, 0x05: 0})

    def update(self) -> None:
        shunt = self.registers[0x01]
        shunt = shunt - 0x10000 if shunt & 0x8000 else shunt
        current = (shunt * self.registers[0x05]) // 4096
        self.registers[0x04] = current & 0xFFFF
        self.registers[0x03] = (abs(current) * (self.registers[0x02] >> 3)) // 5000


class FakeIna260(FakeInaBus):
    """An INA260 reading `volts` and `amps` (and its ids)."""

    def __init__(self, volts: float, amps: float, address: int = 0x40, die_id: int = 0x2270) -> None:
        current_raw = round(amps / 1.25e-3) & 0xFFFF
        bus_raw = round(volts / 1.25e-3)
        power_raw = round(volts * amps / 10e-3)
        super().__init__(address, {0x01: current_raw, 0x02: bus_raw, 0x03: power_raw, 0xFE: 0x5449, 0xFF: die_id})
