"""What comes back after sending: bounces, complaints and auto-replies.

* :mod:`~postline.feedback.keys` — the VERP signing secrets of a node;
* :mod:`~postline.feedback.inbound` — the inbound SMTP server: takes mail only for the
  signed return paths of the bounce domain, its postmaster and the feedback-loop
  address, stores it durably, then answers 250;
* :mod:`~postline.feedback.processor` — reads stored reports and turns them into
  ``bounced`` / ``complained`` / ``auto_reply`` events and suppressions;
* :mod:`~postline.feedback.failures` — after a final delivery failure: soft-bounce runs
  and DSNs to senders who submitted over SMTP.
"""
