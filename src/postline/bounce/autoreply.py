"""Auto-replies (vacation, out-of-office): recognise them so they never count as bounces.

RFC 3834 marks automatic responses with ``Auto-Submitted: auto-replied``; much software
uses ``X-Autoreply``, ``X-Autorespond``, ``Precedence: auto_reply`` or only a subject
such as "Automatic reply:" / "Out of Office" / "Abwesenheitsnotiz". Bounces carry
``Auto-Submitted`` too, so the caller rules out reports and bounces first.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["autoreply_score"]

_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic|matische|matisk|maattinen|matyczna)?[ -]?(?:reply|response|"
    r"antwort|svar|vastaus|odpowied|answer|respuesta|risposta|resposta)\b|auto:|autoreply|"
    r"auto[- ]?response|auto[- ]?responder|automated (?:reply|response|answer|message)|"
    r"out of (?:the )?office|ooo\b|on vacation|vacation|on holiday|on leave|away\b|"
    r"thank you for (?:your (?:e-?mail|message|enquiry|inquiry)|contacting)|"
    r"(?:we|i) (?:have )?received your (?:e-?mail|message|request)|"
    r"away from (?:the |my )?(?:office|desk)|abwesenheit|abwesend|nicht im b[üu]ro|"
    r"r[ée]ponse automatique|absence|absent|fuera de la oficina|respuesta autom[aá]tica|"
    r"risposta automatica|fuori (?:sede|ufficio)|assente|resposta autom[aá]tica|ausente|"
    r"automatisch antwoord|afwezig|autosvar|fr[åa]nvaro|frav[æa]r|automaattinen|"
    r"automatyczna odpowied|nieobecn|автоответ|автоматический ответ|отсутств|"
    r"\u81ea\u52d5\u5fdc\u7b54|\u81ea\u52d5\u8fd4\u4fe1|\u4e0d\u5728|\u81ea\u52a8\u56de\u590d|"
    r"\u81ea\u52d5\u56de\u8986|\uc790\ub3d9 \uc751\ub2f5|\ubd80\uc7ac)",
    re.IGNORECASE,
)
_SUBJECT_ANYWHERE = re.compile(
    r"\b(?:out of (?:the )?office|automatic reply|auto[- ]reply|autoreply|vacation reply|"
    r"auto[- ]?response|automated (?:reply|response)|away from (?:the |my )?(?:office|desk)|"
    r"abwesenheitsnotiz|r[ée]ponse automatique|respuesta autom[aá]tica|risposta automatica)\b",
    re.IGNORECASE,
)
_BODY = re.compile(
    r"\b(?:i am|i'm|i will be|i'll be|i am currently|i'm currently|we are|i have been)"
    r"\s+(?:currently\s+|now\s+)?(?:out of (?:the )?office|away|on (?:vacation|holiday|leave|"
    r"annual leave|maternity leave|parental leave|a business trip|sick leave)|travell?ing|"
    r"out of town|not in the office|off work|unavailable|absent)|"
    r"(?:limited|no) access to (?:my )?e-?mail|will (?:respond|reply|get back to you|"
    r"answer) (?:to your (?:e-?mail|message) )?(?:as soon as|when|upon|on my return)|"
    r"(?:until|returning|return on|back on|back in the office)\b.{0,40}\d|"
    r"ich bin (?:bis|vom|derzeit|zurzeit|momentan)|nicht im b[üu]ro|"
    r"je suis (?:absent|absente|en cong[ée])|je serai absent|"
    r"estoy (?:fuera|de vacaciones|ausente)|sono (?:fuori|in ferie|assente)|"
    r"estou (?:fora|de f[ée]rias|ausente)|ik ben (?:afwezig|met vakantie)|"
    r"this is an? (?:automatic|automated|auto-generated)(?:ally generated)? (?:reply|response|"
    r"message|notification|acknowledge?ment)|"
    r"automatic(?:ally generated)? (?:reply|response)|automated (?:reply|response)|"
    r"(?:in|during) my absence|while i am (?:away|out)|i am (?:away|out) (?:from|of|until)|"
    r"thank you for your (?:e-?mail|message|enquiry|inquiry)[^.\n]{0,80}(?:received|respond|"
    r"reply|get back|answer|contact)|"
    r"\u4e0d\u5728\u306b\u3057\u3066|\u4f11\u6687|\u51fa\u5f35",
    re.IGNORECASE,
)


def autoreply_score(get: Callable[[str], str], subject: str, body: str) -> int:
    """How strongly a message reads as an auto-reply: 0 none, 1 body only, 2 headers.

    ``get`` returns a decoded header value (``""`` when absent).
    """
    auto_submitted = get("Auto-Submitted").strip().lower()
    if auto_submitted.startswith("auto-replied"):
        return 2
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply"):
        value = get(name).strip().lower()
        if value and value not in ("no", "false", "0"):
            return 2
    for name in ("Precedence", "X-Precedence"):
        if get(name).strip().lower() == "auto_reply":
            return 2
    if get("X-Vacation") or (get("X-Ms-Exchange-Inbox-Rules-Loop") and _SUBJECT.search(subject)):
        return 2
    if _SUBJECT.search(subject) or _SUBJECT_ANYWHERE.search(subject):
        return 2
    if auto_submitted.startswith("auto-generated") and _BODY.search(body[:3000]):
        return 2
    if _BODY.search(body[:3000]):
        return 1
    return 0
