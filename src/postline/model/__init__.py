"""Plain, frozen data types shared by every layer. Imports nothing from postline."""

from postline.model.reply import Reply
from postline.model.types import (
    EventType,
    RecipientState,
    split_address,
)

__all__ = ["EventType", "RecipientState", "Reply", "split_address"]
