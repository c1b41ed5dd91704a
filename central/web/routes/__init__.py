"""Every route of the console, by page."""

from __future__ import annotations

from starlette.routing import BaseRoute

from roadside.central.web.routes import audit, boxes, counts, events, footage, live, login, users

ROUTES: list[BaseRoute] = [
    *login.routes,
    *boxes.routes,
    *events.routes,
    *footage.routes,
    *live.routes,
    *counts.routes,
    *audit.routes,
    *users.routes,
]
