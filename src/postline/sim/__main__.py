"""``python -m postline.sim``: the same as ``postline sim``."""

from __future__ import annotations

from postline.cli.sim import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
