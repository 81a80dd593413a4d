"""The operator dashboard at ``/ui``: the node's state and the operator's actions in a
browser, beside the admin API and with the same admin tokens.

* :mod:`postline.dashboard.session`: signed session cookies and CSRF tokens;
* :mod:`postline.dashboard.routes`: sign-in and out, pages, JSON feeds, actions;
* :mod:`postline.dashboard.views`: what each page shows, read through
  :mod:`postline.control` (the dashboard never calls the store itself);
* :mod:`postline.dashboard.html`: the page layout and escaping helpers;
* ``static/``: the stylesheet, the script (polling and hand-drawn SVG charts) and the
  icon, served from the package (no build step, nothing from another origin).
"""

from __future__ import annotations

from postline.dashboard.context import DashboardContext
from postline.dashboard.routes import router
from postline.dashboard.session import SessionCodec

__all__ = ["DashboardContext", "SessionCodec", "router"]
