"""The errors of :mod:`postline.dkim`, grouped by what the caller can do.

DkimError                  root of this package (a :class:`postline.errors.PostlineError`)
├── KeyFormatError         the key cannot be used: bad PEM, unsupported type or size, a key
│                          that does not match its algorithm, a bad domain or selector;
│                          fix the key (or generate a new one)
├── SealError              a sealed key cannot be opened: the master key is wrong (the
│                          configured secret changed) or the sealed bytes are damaged
└── MessageFormatError     the message cannot be signed as given (e.g. it has no From
                           header); fix the message

A secret that cannot make a master key (an empty one) is a
:class:`postline.errors.ConfigError`. Each class docstring is its default message.
"""

from __future__ import annotations

from postline.errors import PostlineError

__all__ = ["DkimError", "KeyFormatError", "MessageFormatError", "SealError"]


class DkimError(PostlineError):
    """DKIM signing or key handling failed."""


class KeyFormatError(DkimError):
    """The DKIM key is invalid or unsupported."""


class SealError(DkimError):
    """The sealed DKIM key cannot be opened: wrong master key or damaged data."""


class MessageFormatError(DkimError):
    """The message cannot be DKIM-signed as given."""
