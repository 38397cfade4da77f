"""I2C register access for the INA2xx meters, through smbus2 (an optional import), and their shared base.

INA2xx registers are 16-bit big-endian; SMBus word reads and writes are
little-endian, so every word is byte-swapped on the way in and out.
"""

from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from agent.power.base import Meter, MeterError, now_ns


def swap16(word: int) -> int:
    """A 16-bit word with its two bytes exchanged."""
    return ((word & 0xFF) << 8) | ((word >> 8) & 0xFF)


def to_signed16(value: int) -> int:
    """A 16-bit register value read as two's complement."""
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value


class Register(NamedTuple):
    """One 16-bit register of an INA2xx chip, as its datasheet's register map describes it.

    address: the register's pointer byte
    lsb: what one bit is worth, in the unit of the quantity (1: a raw word)
    signed: two's complement; shift: low bits holding flags, not the value
    """

    address: int
    lsb: float = 1.0
    signed: bool = False
    shift: int = 0

    def value(self, raw: int, lsb: Optional[float] = None) -> float:
        """The quantity a register word holds; `lsb` replaces the bit's worth when calibration sets it."""
        number = to_signed16(raw) if self.signed else raw
        return (number >> self.shift) * (self.lsb if lsb is None else lsb)


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


class I2cMeter(Meter):
    """A meter chip at `address` on /dev/i2c-<bus>: opens the bus, sets the chip up, reads registers, closes.

    A subclass sets the chip up in `configure()` and turns the registers it reads
    with `read()` into watts in `sample()`. `bus_factory` (bus number -> an
    smbus2-like object) lets tests stand in for the bus.
    """

    def __init__(self, root: str, bus: int, address: int, rate_hz: float,
                 bus_factory: Optional[Callable[[int], Any]]) -> None:
        super().__init__(root)
        self.bus_number = int(bus)
        self.address = int(address)
        self.nominal_rate_hz = float(rate_hz)
        self.bus_factory = bus_factory or open_bus
        self._bus: Any = None

    @property
    def chip(self) -> str:
        """The chip's name as its datasheet writes it (the meter's name in capitals: INA219)."""
        return self.name.upper()

    @property
    def where(self) -> str:
        """The chip's address and bus, in words."""
        return f"0x{self.address:02x} on i2c-{self.bus_number}"

    def configure(self) -> None:
        """Set up or identify the chip right after the bus opens (OSError: no chip answers)."""

    def word(self, register: Register) -> int:
        """One register's raw word (OSError when no chip answers)."""
        return read_register(self._bus, self.address, register.address)

    def write_word(self, register: Register, value: int) -> None:
        """Write one register (OSError when no chip answers)."""
        write_register(self._bus, self.address, register.address, value)

    def open(self) -> None:
        self._bus = self.bus_factory(self.bus_number)
        try:
            self.configure()
        except OSError as exc:
            raise MeterError(f"no {self.chip} answers at {self.where}: {exc.strerror}") from exc
        self.sample()

    def read(self, *registers: Register) -> Tuple[int, List[int]]:
        """(monotonic_ns, raw words) of the registers read in this order, stamped midway through the reads."""
        before = now_ns()
        try:
            values = [self.word(register) for register in registers]
        except OSError as exc:
            raise MeterError(f"{self.chip} {self.where}: {exc.strerror}") from exc
        return (before + now_ns()) // 2, values

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None
