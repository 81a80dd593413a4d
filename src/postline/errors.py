"""The exception tree of postline, grouped by what the caller can do.

PostlineError                 root; only supervisors catch anything broader
├── ConfigError               fix the configuration file and restart
├── StoreError                the store failed (see postline.store.errors)
│   ├── StoreUnavailable      retry later (disk full, database down, busy)
│   ├── IntegrityViolation    a uniqueness rule was broken (e.g. idempotency key)
│   └── NotFound              the named object does not exist
├── ValidationError           the input is wrong; the message says how to fix it
├── SendingPaused             the tenant is paused (reputation): an operator must resume it
├── RateLimited               a tenant's or an API key's rate limit: retry after a wait
├── QuotaExceeded             a tenant's daily or monthly quota: wait for the reset
├── ThrottleError             the throttle backend failed (a bug or a misconfiguration)
│   └── ThrottleUnavailable   it cannot be reached: wait and retry, send nothing meanwhile
└── SMTPClientError           an outbound SMTP conversation failed (postline.smtp.wire)

Each class docstring is its default message.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IntegrityViolation",
    "NotFound",
    "PostlineError",
    "QuotaExceeded",
    "RateLimited",
    "SendingPaused",
    "StoreError",
    "StoreUnavailable",
    "ThrottleError",
    "ThrottleUnavailable",
    "ValidationError",
]


class PostlineError(Exception):
    """postline failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(PostlineError):
    """The configuration is invalid."""


class StoreError(PostlineError):
    """The store failed."""

    op: str | None = None
    """The store operation it was counted as, once reported (``postline.store.health``)."""


class StoreUnavailable(StoreError):
    """The store cannot take writes right now; retry later."""


class IntegrityViolation(StoreError):
    """A uniqueness rule of the store was broken."""


class NotFound(StoreError):
    """The object does not exist."""


class ValidationError(PostlineError):
    """The input is invalid."""

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.fix = fix


class SendingPaused(PostlineError):
    """The tenant's sending is paused; an operator must resume it."""

    def __init__(
        self, message: str, *, tenant: str, reason: str, since: float, fix: str, smtp: str
    ) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.reason = reason
        self.since = since
        self.fix = fix
        self.smtp = smtp
        """The refusal as one SMTP reply line (code, enhanced code and text)."""


class RateLimited(PostlineError):
    """A sending rate limit was reached."""

    def __init__(
        self, message: str, *, scope: str, rate: int, burst: int, retry_after: float
    ) -> None:
        super().__init__(message)
        self.scope = scope
        """``tenant`` or ``key``: whose limit."""
        self.rate = rate
        """Recipients per second."""
        self.burst = burst
        self.retry_after = retry_after
        """Seconds until the same request would be granted."""


class QuotaExceeded(PostlineError):
    """A sending quota was reached."""

    def __init__(
        self,
        message: str,
        *,
        period: str,
        limit: int,
        used: int,
        requested: int,
        resets_at: float,
    ) -> None:
        super().__init__(message)
        self.period = period
        """``daily`` or ``monthly``."""
        self.limit = limit
        self.used = used
        """Recipients counted in the period so far."""
        self.requested = requested
        """Recipients of the refused call."""
        self.resets_at = resets_at
        """When the period ends (UTC midnight of the next day or month), epoch seconds."""


class ThrottleError(PostlineError):
    """The throttle backend failed."""


class ThrottleUnavailable(ThrottleError):
    """The throttle backend cannot be reached; nothing may be sent until it returns."""
