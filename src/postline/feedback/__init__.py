"""What comes back after sending: bounces, complaints and auto-replies.

The inbound SMTP server that receives them and stores them durably is a front door of
its own (:mod:`postline.inbound`); this package processes what it stored.

* :mod:`~postline.feedback.keys` — the VERP (and unsubscribe) signing secrets of a node;
* :mod:`~postline.feedback.processor` — reads stored reports and turns them into
  ``bounced`` / ``complained`` / ``auto_reply`` / ``unsubscribed`` events and
  suppressions;
* :mod:`~postline.feedback.unsubscribe` — signed ``List-Unsubscribe`` links (one-click
  URL and mailto) and what using one does;
* :mod:`~postline.feedback.failures` — after a final delivery failure: soft-bounce runs
  and DSNs to senders who submitted over SMTP.
"""
