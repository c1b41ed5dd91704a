"""The console as an ASGI app: what every page shares, and the routes put together.

``Console`` owns the station's handles for one process (store, accounts, sessions, login
throttle, footage desk) and the Jinja2 environment; ``create_app`` builds the Starlette app
around it. Headers on every response keep the pages from being framed, sniffed or loading
anything from elsewhere (the station may have no internet, and should not reach it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roadside.central import i18n
from roadside.central.accounts import Accounts
from roadside.central.config import CentralConfig
from roadside.central.store import Store
from roadside.central.web import messages
from roadside.central.web.auth import LoginThrottle, request_language
from roadside.central.web.footage import FootageDesk
from roadside.central.web.sessions import Session, SessionStore

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; "
    b"media-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
}


class Console:
    """Everything the routes of one console process share."""

    def __init__(self, cfg: CentralConfig, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self.zone = cfg.zone
        self.accounts = Accounts(store.engine)
        self.sessions = SessionStore(store.engine, self.accounts, cfg.web.session_hours * 3600)
        self.throttle = LoginThrottle(cfg.web.login_failures, cfg.web.login_pause_s)
        self.desk = FootageDesk(cfg, store)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            extensions=["jinja2.ext.i18n"],
            undefined=jinja2.StrictUndefined,
        )
        self.env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
        self.env.filters.update(
            when=lambda t: i18n.show_datetime(t, self.zone),
            when_s=lambda t: i18n.show_datetime(t, self.zone, seconds=True),
            age=lambda s: i18n.show_age(s),
            size=i18n.show_bytes,
            cls=messages.class_label,
            direction=messages.direction_label,
            audit_state=messages.audit_state,
            action=messages.action_label,
            error=messages.error_sentence,
        )

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page in the language in force (the caller is inside ``i18n.speaking``)."""
        lang = i18n.language()
        context.setdefault("now", time.time())
        html = self.env.get_template(template).render(
            request=request,
            session=session,
            officer=session.account if session else None,
            lang=lang,
            other_lang="en" if lang == "vi" else "vi",
            path=request.url.path,
            query=request.url.query,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def refuse(self, request: Request, session: Session, lang: str) -> Response:
        """403: the officer's role does not allow this."""
        with i18n.speaking(lang):
            return self.render(request, "refused.html", session, status_code=403)


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS.items() if k not in have]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(cfg: CentralConfig, store: Store) -> Starlette:
    """The console for this station config, on an open store."""
    from roadside.central.web.routes import ROUTES

    console = Console(cfg, store)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        console.desk.stop()

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        with i18n.speaking(request_language(request)):
            return console.render(
                request,
                "message.html",
                None,
                status_code=status,
                title=i18n._("Not found") if status == 404 else i18n._("Error"),
                text=i18n._("There is nothing at this address.")
                if status == 404
                else i18n._("The station could not answer this request."),
            )

    app = Starlette(
        exception_handlers={HTTPException: not_found},
        routes=[
            *ROUTES,
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    return app
