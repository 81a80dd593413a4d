"""A node's worker processes: the supervisor that starts and restarts them
(``supervisor.py``) and the link over which they answer for the node together
(``link.py``)."""

__all__: list[str] = []
