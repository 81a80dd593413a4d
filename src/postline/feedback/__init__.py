"""What comes back after sending: bounces, complaints and auto-replies.

* :mod:`~postline.feedback.keys` — the VERP (and unsubscribe) signing secrets of a node;
* :mod:`~postline.feedback.inbound` — the inbound SMTP server: takes mail only for the
  signed return paths of the bounce domain, its postmaster and the feedback-loop
  address, stores it durably, then answers 250;
* :mod:`~postline.feedback.processor` — reads stored reports and turns them into
  ``bounced`` / ``complained`` / ``auto_reply`` / ``unsubscribed`` events and
  suppressions;
* :mod:`~postline.feedback.unsubscribe` — signed ``List-Unsubscribe`` links (one-click
  URL and mailto) and what using one does;
* :mod:`~postline.feedback.failures` — after a final delivery failure: soft-bounce runs
  and DSNs to senders who submitted over SMTP.
"""
