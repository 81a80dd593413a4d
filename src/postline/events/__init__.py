"""The event log as users see it: one JSON object per event, the same in
``GET /v1/events`` and in webhook deliveries."""

from postline.events.objects import event_object, iso

__all__ = ["event_object", "iso"]
