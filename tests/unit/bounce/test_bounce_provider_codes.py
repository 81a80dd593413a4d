"""Provider code tables (Microsoft, Google, Yahoo, GoDaddy, Tencent QQ) in 05-providers.toml.

Every reply below is written for these tests after the wording of the provider's published
error reference; none is copied from a real bounce.
"""

from __future__ import annotations

import pytest

from postline.bounce import classify

# (reply text, DSN action or None for a synchronous reply, expected category, rule)
PROVIDER_REPLIES = [
    # Microsoft: Outlook.com / Exchange Online
    (
        "550 5.7.1 Service unavailable, Client host [198.51.100.7] blocked using Spamhaus.",
        "failed",
        "spam_block",
        "microsoft-ip-blocklist",
    ),
    (
        "550 5.7.1 Messages from [198.51.100.7] weren't sent. Part of their network is on"
        " our block list (S3150).",
        "failed",
        "spam_block",
        "microsoft-ip-blocklist",
    ),
    (
        "550 5.7.606 Access denied, banned sending IP [198.51.100.7].",
        "failed",
        "spam_block",
        None,
    ),
    (
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
        "failed",
        "invalid_recipient",
        "microsoft-directory-unknown",
    ),
    (
        "530 5.7.57 Client not authenticated to send mail.",
        "failed",
        "auth_failure",
        "microsoft-unauthenticated",
    ),
    # Google
    (
        "550-5.7.1 Our system has detected that this message is likely unsolicited mail.",
        "failed",
        "spam_content",
        "gmail-unsolicited",
    ),
    (
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating"
        " from your domain.",
        "delayed",
        "rate_limited",
        None,
    ),
    (
        "450-4.2.1 The user you are trying to contact is receiving mail too quickly.",
        "delayed",
        "rate_limited",
        "gmail-rate",
    ),
    (
        "550-5.7.26 This message does not have authentication information or fails to pass"
        " authentication checks (SPF or DKIM).",
        "failed",
        "auth_failure",
        None,
    ),
    (
        "550-5.2.1 The email account that you tried to reach is disabled.",
        "failed",
        "inactive_mailbox",
        None,
    ),
    (
        "552-5.2.2 The email account that you tried to reach is over quota.",
        "failed",
        "mailbox_full",
        None,
    ),
    # Yahoo
    (
        "421 4.7.0 [TSS04] Messages from 198.51.100.7 temporarily deferred due to unexpected"
        " volume or user complaints",
        "delayed",
        "spam_block",
        None,
    ),
    (
        "553 5.7.1 [BL21] Connections will not be accepted from 198.51.100.7",
        "failed",
        "spam_block",
        None,
    ),
    (
        "554 5.7.9 Message not accepted for policy reasons.",
        "failed",
        "policy",
        "yahoo-policy",
    ),
    # GoDaddy
    ("535 Authentication not allowed on IBSMTP Servers. IB401", "failed", "auth_failure", None),
    ("550 Blank From: addresses are not allowed. IB501", "failed", "protocol", None),
    ("550 example.net From: Domain is invalid. IB506", "failed", "policy", None),
    (
        "552 5.2.0 This message has been rejected due to content judged to be spam IB212",
        "failed",
        "spam_content",
        None,
    ),
    ("421 Server temporarily unavailable. Try again later. IB101", "delayed", "rate_limited", None),
    # Tencent QQ
    ("550 Ip frequency limited", "failed", "rate_limited", "qq-frequency"),
    ("550 Mail content denied", "failed", "spam_content", "qq-content"),
    ("550 Mailbox is frozen", "failed", "inactive_mailbox", "qq-frozen"),
]


@pytest.mark.parametrize(("text", "action", "category", "rule"), PROVIDER_REPLIES)
def test_provider_replies(text: str, action: str | None, category: str, rule: str | None) -> None:
    result = classify(text, action=action)
    assert result.category == category, (text, result.rule)
    if rule is not None:
        assert result.rule == rule
