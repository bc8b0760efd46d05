"""Errors of `edgectl`, split by what the person at the keyboard does next. Each class carries
its exit code; the CLI prints `edgectl: <message>` (one line) and exits with it.

    ProvisioningError                  anything edgectl refuses on purpose
    ├── LocalError             3       fix a local file, option or permission
    │   └── KeyFileError       3       a private key file is missing, unsafe or not a key
    ├── UnreachableError       4       the receiver could not be reached (network, DNS, timeout)
    ├── TlsError               5       TLS failed: certificate not trusted, wrong host, expired
    ├── TokenRefusedError      6       the receiver refused the enrolment token (unknown, used,
    │                                  revoked or altered) or it is not a token at all
    ├── TokenExpiredError      7       the token's own expiry has passed (checked locally)
    ├── TokenDeviceError       8       the token was issued for another device id (checked locally)
    ├── AlreadyEnrolledError   9       the directory already holds an enrolled key
    ├── UnauthorizedError     10       the admin token was refused
    ├── NotFoundError         11       no such device or key on the receiver
    ├── RefusedError          12       the receiver said no for a reason a retry will not fix:
    │                                  key revoked or retired, device disabled or still pending
    └── ReceiverError         13       the receiver failed or answered unexpectedly (5xx, 429,
                                       malformed answer): try again later

Exit codes 0 (done), 1 (some checks or rows failed: `doctor`, `fleet plan`) and 2 (bad command
line, from argparse) are not errors of this tree. Messages never contain a secret: no admin
token, no enrolment token, no key material.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2


class ProvisioningError(Exception):
    """Base of every error edgectl raises on purpose; `exit_code` is what the process returns."""

    exit_code = 3


class LocalError(ProvisioningError):
    exit_code = 3


class KeyFileError(LocalError):
    exit_code = 3


class UnreachableError(ProvisioningError):
    exit_code = 4


class TlsError(ProvisioningError):
    exit_code = 5


class TokenRefusedError(ProvisioningError):
    exit_code = 6


class TokenExpiredError(ProvisioningError):
    exit_code = 7


class TokenDeviceError(ProvisioningError):
    exit_code = 8


class AlreadyEnrolledError(ProvisioningError):
    exit_code = 9


class UnauthorizedError(ProvisioningError):
    exit_code = 10


class NotFoundError(ProvisioningError):
    exit_code = 11


class RefusedError(ProvisioningError):
    exit_code = 12


class ReceiverError(ProvisioningError):
    exit_code = 13


class ConfigRefusedError(ProvisioningError):
    """A pushed config the receiver's check refused: every problem, one line each."""

    exit_code = 14

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = [f"config refused ({len(problems)} problem(s)):", *problems]
        super().__init__("\n".join(lines))


EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "done"),
    (1, "some checks (doctor) or rows (fleet plan) failed; each is reported"),
    (2, "bad command line"),
    (3, "a local problem: config, option, file or permission (the message says which)"),
    (4, "receiver unreachable (network, DNS, timeout)"),
    (5, "TLS failure (certificate not trusted, wrong host name, clock)"),
    (6, "enrolment token refused: unknown, already used, revoked, or altered"),
    (7, "enrolment token expired"),
    (8, "enrolment token is for another device id"),
    (9, "already enrolled: the directory holds a device key (see --replace)"),
    (10, "admin token refused"),
    (11, "no such device or key"),
    (12, "refused by the receiver: key revoked or retired, device disabled or pending"),
    (13, "the receiver failed or answered unexpectedly; try again later"),
    (14, "config push refused: the config failed the agent's checks (each problem is printed)"),
)
