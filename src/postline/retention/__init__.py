"""Retention: what the store keeps, and for how long (``[retention]``)."""

from postline.retention.cleaner import Cleaner

__all__ = ["Cleaner"]
