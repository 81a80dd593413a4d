"""The SMTP submission front door: tenants' mail client and application relays.

:mod:`~postline.submission.server` — AUTH over TLS or trusted networks only, then each
message through the same ingest path as the HTTP API (``postline.api``) before the 250.
It speaks SMTP through :mod:`postline.smtp.server` (the aiosmtpd base, its connection
limits and timeouts); the protocol package knows nothing of tenants, ingest or the
store.
"""

from postline.submission.server import SubmissionHandler, start_submission

__all__ = ["SubmissionHandler", "start_submission"]
