"""Provider code tables (Microsoft, Google, Yahoo, Comcast, Apple, GoDaddy, Tencent QQ).

The rules are in 05-providers.toml and, for Microsoft's own three-digit status details,
50-status.toml.

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
    # Microsoft: Exchange Online NDR table (sender limits, delivery restrictions, TLS)
    (
        "550 5.2.2 STOREDRV.Submission.Exception:SubmissionQuotaExceededException;"
        " Failed to process message due to a permanent exception",
        "failed",
        "rate_limited",
        "microsoft-sending-limits",
    ),
    (
        "550 5.1.90 Your message can't be sent because you've reached your daily limit for"
        " message recipients",
        "failed",
        "rate_limited",
        None,
    ),
    (
        "432 4.3.2 STOREDRV.Deliver; recipient thread limit exceeded",
        "delayed",
        "rate_limited",
        "microsoft-sending-limits",
    ),
    (
        "550 5.7.508 Access denied, [2001:db8::7] has exceeded permitted limits within"
        " 2001:db8::/64 range",
        "failed",
        "rate_limited",
        None,
    ),
    ("550 5.7.508 Access denied", "failed", "rate_limited", "status-microsoft-rate"),
    (
        "550 5.7.12 Sender was not authenticated by organization",
        "failed",
        "policy",
        "microsoft-delivery-restriction",
    ),
    (
        "550 5.7.13 Sender was not authenticated for public folder",
        "failed",
        "policy",
        "microsoft-delivery-restriction",
    ),
    (
        "550 5.7.133 RESOLVER.RST.SenderNotAuthenticatedForGroup; Sender not authenticated for"
        " group",
        "failed",
        "policy",
        "microsoft-delivery-restriction",
    ),
    ("550 5.7.124 Sender not in allowed-senders list", "failed", "policy", None),
    (
        "550 5.7.512 Access denied, message must be RFC 5322 section 3.6.2 compliant",
        "failed",
        "protocol",
        "microsoft-format",
    ),
    (
        "550 5.7.510 Access denied, example.net does not accept email over IPv6",
        "failed",
        "routing",
        "microsoft-ipv6-not-accepted",
    ),
    (
        "550 5.7.505 Access denied, banned recipient",
        "failed",
        "inactive_mailbox",
        "microsoft-banned-recipient",
    ),
    (
        "451 4.7.321 starttls-not-supported: Destination mail server must support TLS to"
        " receive mail",
        "delayed",
        "auth_failure",
        "microsoft-tls",
    ),
    ("550 5.4.300 Message expired", "failed", "expired", None),
    (
        "550 5.4.310 DNS domain example.invalid does not exist [Message=InfoDomainNonexistent]",
        "failed",
        "bad_domain",
        None,
    ),
    (
        "550 5.7.64 TenantAttribution; Relay Access Denied",
        "failed",
        "relay_denied",
        None,
    ),
    (
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains",
        "failed",
        "spam_block",
        None,
    ),
    (
        "550 5.7.509 Access denied, sending domain example.com does not pass DMARC"
        " verification and has a DMARC policy of reject",
        "failed",
        "auth_failure",
        None,
    ),
    (
        "550 5.7.955 Delivery not authorized, message refused",
        "failed",
        "policy",
        None,
    ),
    # Google: SMTP error reference
    (
        "550-5.7.26 This mail is unauthenticated, which poses a security risk to the sender"
        " and Gmail users, and has been blocked. The sender must authenticate with at least"
        " one of SPF or DKIM.",
        "failed",
        "auth_failure",
        None,
    ),
    (
        "550 5.7.1 Unauthenticated email is not accepted from this domain.",
        "failed",
        "auth_failure",
        "gmail-sender-unauthenticated",
    ),
    (
        "421 4.7.0 TLS required for RCPT domain, closing connection.",
        "delayed",
        "auth_failure",
        "gmail-sender-unauthenticated",
    ),
    (
        "550-5.7.1 Our system has detected an unusual rate of unsolicited mail originating"
        " from your IP address. To protect our users from spam, mail sent from your IP"
        " address has been blocked.",
        "failed",
        "spam_block",
        "gmail-ip-reputation",
    ),
    (
        "421 4.7.0 IP not in whitelist for RCPT domain, closing connection.",
        "delayed",
        "spam_block",
        "gmail-ip-reputation",
    ),
    (
        "550 5.4.5 Daily SMTP relay limit exceeded for user.",
        "failed",
        "rate_limited",
        None,
    ),
    (
        "450 4.2.1 Peak SMTP relay limit exceeded for customer.",
        "delayed",
        "rate_limited",
        "gmail-relay-limits",
    ),
    (
        "550 5.7.1 The user or domain that you are sending to (or from) has a policy that"
        " prohibited the mail that you sent.",
        "failed",
        "policy",
        "gmail-content-policy",
    ),
    ("550 5.7.0 Mail Sending denied.", "failed", "policy", "gmail-content-policy"),
    # Comcast: BLnnnnnn / ESnnnnnn / RLnnn
    (
        "554 resimta.example.comcast.net 198.51.100.7 found on one or more DNSBLs, see"
        " http://postmaster.comcast.net/smtp-error-codes.php#BL000010",
        "failed",
        "spam_block",
        "comcast-blocked",
    ),
    (
        "554 198.51.100.7 is a dynamic or residential address ES000010",
        "failed",
        "spam_block",
        "comcast-blocked",
    ),
    ("421 Too many sessions opened", "delayed", "rate_limited", "comcast-rate"),
    # Apple iCloud Mail
    (
        "550 5.7.1 Your email was rejected due to having a domain present in the Spamhaus DBL"
        " -- see https://www.spamhaus.org/dbl/",
        "failed",
        "spam_content",
        "icloud-domain-blocklist",
    ),
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
