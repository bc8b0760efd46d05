"""Errors of the firmware bridge, split by what the caller does next and by who is at fault.

    BridgeError                        anything firmware_bridge raises on purpose
    ├── ProtocolError                  a protocol rule was broken; `remote` says by whom
    │   ├── LocalProtocolError         we tried to send what the protocol forbids (a bug here)
    │   └── RemoteProtocolError        the peer sent what the protocol forbids
    │       ├── FrameError             one frame is damaged (COBS, CRC, length): drop it, resync
    │       └── UnparsableAnswerError  an instrument's line matches no pattern: count, go on
    │           └── UnexpectedUnitError  it names a unit its value cannot have: count, go on
    ├── ConfigError                    fix the configuration; `problems` lists every one found
    ├── PortError                      a serial port cannot be used
    │   ├── PortUnavailableError       not there (ENOENT/ENODEV/EIO on open): retry with backoff
    │   ├── PortBusyError              another owner holds it (flock/TIOCEXCL): fix the setup
    │   ├── PortAccessError            permission denied: fix the setup
    │   └── PortLostError              went away while open (EIO/ENODEV/EOF): reopen with backoff
    └── DeviceError                    a device on a working link gave no value
        ├── DeviceTimeoutError         no answer in time (counted; readings flagged BAD)
        └── DeviceExceptionError       a Modbus exception response (`code`)

The serial sources (`agent.sources`) never let these escape their `run()` except ConfigError (and
LocalProtocolError, a bug): device and port trouble is counted, logged and flagged on readings,
then retried.
Foreign exceptions (OSError, pyserial, pymodbus, msgspec, tomllib) are translated once, in the
module that talks to them, with `raise ... from exc`.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error firmware_bridge raises on purpose."""


class ProtocolError(BridgeError):
    """A protocol rule was broken. `remote` is True when the peer broke it."""

    remote: bool = False


class LocalProtocolError(ProtocolError):
    """This side tried to do something the protocol forbids: a bug in the caller."""

    remote = False


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""

    remote = True


class FrameError(RemoteProtocolError):
    """One frame could not be decoded; the decoder has already resynchronised past it."""


class UnparsableAnswerError(RemoteProtocolError):
    """An instrument answered with a line that matches none of the configured patterns."""


class UnexpectedUnitError(UnparsableAnswerError):
    """An answer names a unit its value cannot have (a bit error, or another instrument)."""


class ConfigError(BridgeError):
    """The configuration is unusable. `problems` holds one line per problem, each naming the key
    path and reason where they are known; `str()` is those lines joined (the same shape in every
    package's ConfigError)."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        # Not Sequence[str]: a str is one, and a message passed by mistake would become a problem
        # per character. This way mypy refuses `ConfigError("...")`.
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class PortError(BridgeError):
    """A serial port cannot be used; the message names the path and the OS reason."""


class PortUnavailableError(PortError):
    """The port is not there (yet): unplugged adapter, missing device node."""


class PortBusyError(PortError):
    """Another process or source owns the port."""


class PortAccessError(PortError):
    """The port exists but this process may not open it."""


class PortLostError(PortError):
    """The port went away while it was open."""


class DeviceError(BridgeError):
    """A device on a working link did not give a value."""


class DeviceTimeoutError(DeviceError):
    """No (complete) answer within the configured time."""


class DeviceExceptionError(DeviceError):
    """The device answered with a Modbus exception response."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code
