"""Clients of postline's own HTTP APIs: :mod:`postline.client.admin` speaks to a node's
admin API (``/admin/v1``) for the operator's commands."""

from __future__ import annotations

from postline.client.admin import AdminClient, ApiError, Unreachable

__all__ = ["AdminClient", "ApiError", "Unreachable"]
