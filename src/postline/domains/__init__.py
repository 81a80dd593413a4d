"""Sender domains: DKIM keys, the DNS records to publish, their verification, and the
signing of outbound mail (see :mod:`~postline.domains.service`)."""
