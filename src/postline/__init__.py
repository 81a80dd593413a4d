"""postline: an email sending platform.

HTTP and SMTP ingestion, a durable queue partitioned by recipient domain, and a
throttled SMTP delivery engine. See README.md for the architecture.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
