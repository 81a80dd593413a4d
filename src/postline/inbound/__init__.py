"""The inbound SMTP front door: where bounces, complaints and auto-replies come back.

:mod:`~postline.inbound.server` — takes mail only for the signed return paths of the
bounce domain, its postmaster and the feedback-loop address, stores it durably, then
answers 250; :mod:`postline.feedback` processes what it stored. It speaks SMTP through
:mod:`postline.smtp.server` (the aiosmtpd base, its connection limits and timeouts).
"""

from postline.inbound.server import InboundHandler, start_inbound

__all__ = ["InboundHandler", "start_inbound"]
