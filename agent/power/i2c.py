"""I2C register access for the INA2xx meters, through smbus2 (an optional import).

INA2xx registers are 16-bit big-endian; SMBus word reads and writes are
little-endian, so every word is byte-swapped on the way in and out.
"""

from __future__ import annotations

from typing import Any

from agent.power.base import MeterError


def swap16(word: int) -> int:
    """A 16-bit word with its two bytes exchanged."""
    return ((word & 0xFF) << 8) | ((word >> 8) & 0xFF)


def to_signed16(value: int) -> int:
    """A 16-bit register value read as two's complement."""
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value


def open_bus(bus: int) -> Any:
    """An smbus2.SMBus on /dev/i2c-<bus>; a clear error when smbus2 or the device is missing."""
    try:
        import smbus2
    except ImportError:
        raise MeterError("I2C meters need the smbus2 package: pip install smbus2") from None
    try:
        return smbus2.SMBus(bus)
    except OSError as exc:
        raise MeterError(f"cannot open /dev/i2c-{bus}: {exc.strerror} (is the i2c-dev module loaded, "
                         "and is this user in the i2c group?)") from exc


def read_register(bus: Any, address: int, register: int) -> int:
    """One 16-bit register of the device at `address`, as the chip means it (big-endian)."""
    return swap16(bus.read_word_data(address, register))


def write_register(bus: Any, address: int, register: int, value: int) -> None:
    """Write one 16-bit register of the device at `address`."""
    bus.write_word_data(address, register, swap16(value & 0xFFFF))
