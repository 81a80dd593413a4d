"""An independent DKIM verifier for tests: Perl's Mail::DKIM (Debian libmail-dkim-perl),
resolving keys through a given DNS server (e.g. the sim's)."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess

import pytest

__all__ = ["VERIFY", "mail_dkim", "perl_problem", "require_mail_dkim"]

VERIFY = r"""
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;

my ($address, $port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => [$address], port => $port, retry => 1,
    udp_timeout => 5, tcp_timeout => 5,
));
binmode STDIN;
my $message = do { local $/; <STDIN> };
my $dkim = Mail::DKIM::Verifier->new();
$dkim->PRINT($message);
$dkim->CLOSE();
print join("\t", $dkim->result, $dkim->result_detail // ""), "\n";
"""


@functools.cache
def perl_problem() -> str | None:
    if shutil.which("perl") is None:
        return "perl is not installed"
    probe = subprocess.run(
        ["perl", "-MMail::DKIM::Verifier", "-MNet::DNS::Resolver", "-e", "1"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return "Perl's Mail::DKIM is not installed (apt-get install libmail-dkim-perl)"
    return None


def require_mail_dkim() -> None:
    """Skip without Mail::DKIM here; fail under CI, which installs it (.ci/run)."""
    problem = perl_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI installs libmail-dkim-perl: see .ci/run)")
    pytest.skip(problem)


async def mail_dkim(message: bytes, host: str, port: int) -> str:
    """Mail::DKIM's result for ``message``: ``pass``, ``fail``, ``invalid``... and detail."""
    process = await asyncio.create_subprocess_exec(
        "perl",
        "-e",
        VERIFY,
        host,
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(message), 30)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()
