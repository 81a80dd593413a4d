#!/usr/bin/env python3
"""Bounce analysis of reports that name many recipients: time per recipient as the
report grows, for the shapes a mailing-list bounce or a forged report can take.

For each shape — a plain (Postfix-style prose) bounce, an RFC 3464 DSN, a qmail bounce,
a notice of bare screen names — ``analyze`` runs on a report naming ``--small`` and then
``--large`` recipients. The small report is the baseline measured in the same run: with
work linear in the size of the report the time per recipient stays the same, so the
ratio large/small (per recipient) should stay near 1; a quadratic path would make it
about ``--large / --small``.

    .venv/bin/python bench/bounce_scale.py [--small 500] [--large 8000]

Final line: ``bounce_scale worst_ratio=…x (per-recipient time, large/small)``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from postline.bounce import analyze

HEAD = "From: MAILER-DAEMON@mx.example.org\nTo: b-1@bounce.shop.example\n"


def plain(n: int) -> bytes:
    lines = "".join(f"<u{i}@example.org>: 550 5.1.1 User unknown\n" for i in range(n))
    return (HEAD + "Subject: Undelivered Mail\n\n" + lines).encode()


def dsn(n: int) -> bytes:
    human = "".join(
        f"<u{i}@example.org>: host mx.example.org said: 550 5.1.1 User unknown"
        " (in reply to RCPT TO command)\n\n"
        for i in range(n)
    )
    records = "".join(
        f"Final-Recipient: rfc822; u{i}@example.org\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
        for i in range(n)
    )
    return (
        HEAD + "Subject: Undelivered\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        f"--b\nContent-Type: text/plain\n\n{human}\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        f"{records}--b--\n"
    ).encode()


def qmail(n: int) -> bytes:
    blocks = "".join(
        f"<u{i}@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n" for i in range(n)
    )
    return (
        HEAD + "Subject: failure notice\n\nHi. This is the qmail-send program at mx.example.org.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n" + blocks
    ).encode()


def screen_names(n: int) -> bytes:
    names = "".join(f"    screenname{i}\n" for i in range(n))
    return (
        "From: MAILER-DAEMON@aol.example\nTo: b-1@bounce.shop.example\nSubject: Undeliverable\n\n"
        "Your mail could not be delivered to the following recipients:\n\n" + names
    ).encode()


SHAPES: dict[str, Callable[[int], bytes]] = {
    "plain": plain,
    "dsn": dsn,
    "qmail": qmail,
    "screen_names": screen_names,
}


def per_recipient(raw: bytes, n: int) -> float:
    start = time.perf_counter()
    report = analyze(raw)
    elapsed = time.perf_counter() - start
    assert len(report.results) == n, (len(report.results), n)
    return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=8000)
    args = parser.parse_args()
    analyze(plain(10))  # load the rules before timing
    worst = 0.0
    for name, make in SHAPES.items():
        small = per_recipient(make(args.small), args.small)
        large = per_recipient(make(args.large), args.large)
        ratio = large / small
        worst = max(worst, ratio)
        print(
            f"{name:13} {args.small:>6} rcpts {small * 1e6:8.1f} µs/rcpt   "
            f"{args.large:>6} rcpts {large * 1e6:8.1f} µs/rcpt   ratio {ratio:5.2f}x"
        )
    print(f"bounce_scale worst_ratio={worst:.2f}x (per-recipient time, large/small)")


if __name__ == "__main__":
    main()
