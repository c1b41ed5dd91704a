"""Who is asking, and may they: sessions from cookies, roles, CSRF tokens, login throttling.

Every route but the login page, the language switch and the static files goes through
``page`` (HTML: no session redirects to the login page) or ``api`` (streams, files, forms: no
session is 401). A role below the route's gets 403. Every POST must carry the session's CSRF
token in its ``csrf`` field, compared in constant time; the login form, which has no session
yet, carries a token that must match its own cookie (double submit).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from roadside.central.accounts import Account, Role
from roadside.central.i18n import _, speaking
from roadside.central.web.sessions import Session

SESSION_COOKIE = "roadside_session"
LOGIN_CSRF_COOKIE = "roadside_login"
LANG_COOKIE = "roadside_lang"
MAX_FORM_FIELDS = 50


@dataclass(frozen=True, slots=True)
class Visit:
    """One request as a handler sees it: who, in which language, and the form sent."""

    request: Request
    session: Session
    lang: str
    form: FormData | None

    @property
    def officer(self) -> Account:
        return self.session.account

    def field(self, name: str, default: str = "") -> str:
        if self.form is None:
            return default
        value = self.form.get(name, default)
        return value.strip() if isinstance(value, str) else default


class LoginThrottle:
    """Failed logins per account name and per client address over a sliding window; past
    ``limit`` of either, logins pause for ``pause_s``. In memory: one console process.

    Threading: called from the thread pool; one lock guards the two maps.
    """

    def __init__(self, limit: int, pause_s: float) -> None:
        self.limit = limit
        self.pause_s = pause_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _keys(self, name: str, address: str) -> tuple[str, str]:
        return f"name:{name.lower()}", f"addr:{address}"

    def wait_s(self, name: str, address: str, now: float | None = None) -> float:
        """Seconds until this name/address may try again (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            wait = 0.0
            for key in self._keys(name, address):
                q = self._failures.get(key)
                if not q:
                    continue
                while q and q[0] < now - self.pause_s:
                    q.popleft()
                if len(q) >= self.limit:
                    wait = max(wait, q[0] + self.pause_s - now)
            return wait

    def failed(self, name: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in self._keys(name, address):
                self._failures[key].append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(f"name:{name.lower()}", None)


def request_language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in ("vi", "en") else request.app.state.console.cfg.web.language


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and secrets.compare_digest(str(a), str(b))


async def _visit(request: Request, needed: Role, html: bool) -> Visit | Response:
    console = request.app.state.console
    lang = request_language(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(console.sessions.get, token)
    if session is None:
        if html and request.method == "GET":
            return _login_redirect(request)
        with speaking(lang):
            return PlainTextResponse(_("Please log in."), status_code=401)
    if not session.account.may(needed):
        with speaking(lang):
            return console.refuse(request, session, lang)
    form = None
    if request.method == "POST":
        form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
        if not same_token(form.get("csrf"), session.csrf):  # type: ignore[arg-type]
            with speaking(lang):
                return PlainTextResponse(
                    _("This form has expired. Go back, reload the page and try again."),
                    status_code=403,
                )
    return Visit(request, session, lang, form)


Handler = Callable[[Visit], Response]


def _call(handler: Handler, visit: Visit) -> Response:
    with speaking(visit.lang):
        return handler(visit)


def page(needed: Role) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A page for people: no session sends the browser to the login page."""
    return _guard(needed, html=True)


def api(needed: Role) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A file, a form target or data: no session is 401."""
    return _guard(needed, html=False)


def _guard(needed: Role, html: bool) -> Callable[[Handler], Any]:
    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            visit = await _visit(request, needed, html)
            if isinstance(visit, Response):
                return visit
            return await run_in_threadpool(_call, handler, visit)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return wrap


AsyncHandler = Callable[[Visit], Awaitable[Response]]


def stream(needed: Role) -> Callable[[AsyncHandler], Callable[[Request], Awaitable[Response]]]:
    """A server-sent event stream: no session is 401; the handler is async."""

    def wrap(handler: AsyncHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            visit = await _visit(request, needed, html=False)
            if isinstance(visit, Response):
                return visit
            return await handler(visit)

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap
