"""Errors of the gateway agent, split by what the caller does next.

    AgentError                         anything the agent raises on purpose
    ├── ConfigError                    fix the configuration; carries every problem found at once
    │   ├── KeyFileError               the device key file is missing, unsafe or not a key
    │   └── RuleError                  an MQTT mapping rule cannot be compiled (defined with the
    │                                  mapping rules; `field` names the rule's key)
    ├── StoreError                     the local buffer cannot do its job (disk full, I/O error)
    │   └── StoreDamagedError          the buffer file is not a usable database (moved aside)
    └── UplinkError                    talking to the receiver did not end in an acknowledgement
        ├── TransientUplinkError       retry later: transport failure, 429, 5xx (may carry
        │                              the receiver's Retry-After)
        ├── SeqGapError                409 seq_gap: resend from `expected_seq`
        └── RefusedError               400/401/403/409 chain_conflict/413/415: keep the data,
                                       stop uploading, alarm, re-check slowly

Foreign exceptions (sqlite3, httpx, OSError, tomllib, msgspec) are translated once, in the module
that talks to them, with `raise ... from exc`; none travels past it.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration is unusable. `problems` holds one line per problem, each naming file,
    key path and reason where they are known; `str()` is those lines joined (the same shape in
    every package's ConfigError)."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        # Not Sequence[str]: a str is one, and a message passed by mistake would become a problem
        # per character. This way mypy refuses `ConfigError("...")`.
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class KeyFileError(ConfigError):
    """The device private key file cannot be used as it is."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


class StoreError(AgentError):
    """The buffer database failed; the reason names the file and the SQLite error."""


class StoreDamagedError(StoreError):
    """The buffer file is not a usable database."""


class UnreadableBatchError(StoreError):
    """A frozen batch no longer reads back as it was cut (its stored body does not inflate or
    does not match its digest): the file is damaged under an intact database structure."""


class UplinkError(AgentError):
    """A request to the receiver did not end in an acknowledgement."""


class TransientUplinkError(UplinkError):
    """Worth retrying: `cause` is "transport", "rate_limited" or "server"; `retry_after_s` is the
    receiver's Retry-After when it sent one; `status` the HTTP status, if there was a response."""

    def __init__(
        self,
        message: str,
        *,
        cause: str,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.retry_after_s = retry_after_s
        self.status = status


class SeqGapError(UplinkError):
    """The receiver is missing batches before this one and wants `expected_seq` next."""

    def __init__(self, message: str, *, expected_seq: int) -> None:
        super().__init__(message)
        self.expected_seq = expected_seq


class RefusedError(UplinkError):
    """The receiver refused in a way a plain retry cannot fix.

    `status` is the HTTP status, `code` the stable `error` code from the body (or "" when the body
    had none); `str()` is the line shown in `edge-agent status`, e.g. "403 forbidden".
    """

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
