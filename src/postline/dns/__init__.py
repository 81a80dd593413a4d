"""DNS for delivery: TTL-cached MX, address and TXT lookups (RFC 5321 §5.1, RFC 7505).

See :mod:`postline.dns.resolver` for the rules.
"""

from postline.dns.resolver import DNSTemporaryError, MXHost, MXResult, MXStatus, Resolver

__all__ = ["DNSTemporaryError", "MXHost", "MXResult", "MXStatus", "Resolver"]
