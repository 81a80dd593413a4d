"""The SpamAssassin check: the score spamd gives the message as it would be sent (signed)."""

from __future__ import annotations

from postline.check.findings import Finding
from postline.check.spamd import MAX_SCAN_SIZE, SpamdClient, SpamdError, SpamVerdict
from postline.config import Config

__all__ = ["spam_check", "spamd_client"]


def spamd_client(config: Config) -> SpamdClient | None:
    """The client of ``[check] spamd``; None when none is configured."""
    if not config.check.spamd:
        return None
    return SpamdClient.parse(config.check.spamd, timeout=config.check.spamd_timeout)


async def spam_check(message: bytes, spamd: SpamdClient) -> tuple[Finding, SpamVerdict | None]:
    if len(message) > MAX_SCAN_SIZE:
        return Finding(
            "spamassassin",
            "ok",
            f"not scanned: larger than {MAX_SCAN_SIZE // 1024} KB (spamc does not scan such "
            "messages either)",
        ), None
    try:
        verdict = await spamd.report(message)
    except SpamdError as exc:
        return Finding(
            "spamassassin",
            "warning",
            f"no spam score: {exc}",
            "check that spamd runs and listens where [check] spamd says",
        ), None
    hits = sorted(
        (r for r in verdict.rules if r.score is None or r.score > 0),
        key=lambda r: -(r.score or 0.0),
    )
    listed = ", ".join(
        f"{r.name} ({r.score:g})" if r.score is not None else r.name for r in hits[:8]
    )
    summary = f"SpamAssassin score {verdict.score:g} (threshold {verdict.threshold:g})"
    if listed:
        summary += f": {listed}"
    if verdict.spam or verdict.score >= verdict.threshold:
        return Finding(
            "spamassassin",
            "error",
            summary,
            "change what the rules listed flag (their descriptions are in 'spam.rules')",
        ), verdict
    if verdict.score >= verdict.threshold / 2:
        return Finding(
            "spamassassin",
            "warning",
            summary,
            "the score is over half the threshold; look at the rules listed",
        ), verdict
    return Finding("spamassassin", "ok", summary), verdict
