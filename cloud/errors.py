"""Errors of the receiver, split by what the caller does next.

    CloudError                     anything cloud raises on purpose; never a bare ValueError
    ├── ConfigError                bad flags, environment, token files: fix the config (exit 2)
    ├── StoreError                 the store failed
    │   ├── StoreUnavailableError  cannot reach it, or a lock/statement timed out: retry (503)
    │   ├── SchemaError            schema missing, behind or ahead: run `edge-cloud migrate`
    │   ├── IntegrityError         the store refused a write that breaks its invariants (a bug)
    │   └── RowBudgetError         a read would pass its row budget: narrow the request (400)
    └── RejectedError              a request refused with a protocol status and a fixed body;
                                   raised inside the app, turned into the response at one place

Foreign exceptions (sqlite3, psycopg, OSError) are translated in the module that talks to them,
with `raise ... from exc`; nothing past `cloud.storage` sees a driver exception.
"""

from __future__ import annotations

from collections.abc import Mapping

from wire.http import ErrorBody


class CloudError(Exception):
    """Base of every error the receiver raises on purpose."""


class ConfigError(CloudError):
    """A configuration the operator must fix. `problems` holds one line per problem, each naming
    the flag, variable or file and the reason; `str()` is those lines joined (the same shape in
    every package's ConfigError)."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        # Not Sequence[str]: a str is one, and a message passed by mistake would become a problem
        # per character. This way mypy refuses `ConfigError("...")`.
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class StoreError(CloudError):
    """The store failed."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or timed out; the same request may succeed later."""


class SchemaError(StoreError):
    """The schema does not match this receiver: missing, behind or ahead."""


class IntegrityError(StoreError):
    """The store refused a write that would break its invariants."""


class RowBudgetError(StoreError):
    """The request would read more rows than allowed; narrow the range or the series."""


class RejectedError(CloudError):
    """A refusal with an HTTP status and a protocol body; `log_reason` is for our logs only."""

    def __init__(
        self,
        status: int,
        body: ErrorBody,
        *,
        reason: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.body = body
        self.reason = reason
        self.headers = dict(headers or {})
