"""Logging in and out, and choosing the language."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from roadside.central import i18n
from roadside.central.accounts import Role
from roadside.central.i18n import _
from roadside.central.web.auth import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Visit,
    api,
    new_csrf,
    request_language,
    same_token,
)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a login link cannot send the officer elsewhere."""
    if not target:
        return "/boxes"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/boxes"
    return target


def _secure(request: Request) -> bool:
    return request.app.state.console.cfg.web.uses_tls


def _login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    console = request.app.state.console
    token = new_csrf()
    with i18n.speaking(request_language(request)):
        response = console.render(
            request,
            "login.html",
            None,
            status_code=status,
            csrf=token,
            error=error,
            next=_safe_next(request.query_params.get("next")),
        )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


async def login_form(request: Request) -> Response:
    return _login_page(request)


async def login(request: Request) -> Response:
    console = request.app.state.console
    form = await request.form(max_fields=10, max_files=0)
    lang = request_language(request)
    if not same_token(form.get("csrf"), request.cookies.get(LOGIN_CSRF_COOKIE)):  # type: ignore[arg-type]
        with i18n.speaking(lang):
            return _login_page(request, _("The login form expired; please try again."), 403)
    name = str(form.get("name", "")).strip().lower()[:64]
    password = str(form.get("password", ""))[:1024]
    address = request.client.host if request.client else "?"
    wait = console.throttle.wait_s(name, address)
    if wait > 0:
        with i18n.speaking(lang):
            text = _("Too many failed logins. Wait %(minutes)d minutes, then try again.") % {
                "minutes": max(1, round(wait / 60))
            }
            return _login_page(request, text, 429)
    account = await run_in_threadpool(console.accounts.verify, name, password)
    if account is None:
        console.throttle.failed(name, address)
        await run_in_threadpool(
            console.store.audit.record, name or "?", "login-failed", {"from": address}
        )
        with i18n.speaking(lang):
            return _login_page(request, _("Wrong name or password."), 401)
    console.throttle.succeeded(name)
    token, _session = await run_in_threadpool(console.sessions.open, account)
    await run_in_threadpool(console.store.audit.record, account.name, "login", {"from": address})
    target = _safe_next(str(form.get("next", "")) or None)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(console.cfg.web.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@api(Role.VIEWER)
def logout(v: Visit) -> Response:
    v.request.app.state.console.sessions.close(v.request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


async def language(request: Request) -> Response:
    """A preference cookie, not a change at the station: a plain link sets it."""
    lang = request.query_params.get("set", "")
    response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    if lang in i18n.LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 86400,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
    return response


async def home(request: Request) -> Response:
    return RedirectResponse("/boxes", status_code=303)


routes = [
    Route("/", home),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/language", language, methods=["GET"]),
]
