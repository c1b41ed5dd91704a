"""Accounts, for admins: add one, change a role, reset a password, disable or enable.

Every change is audited under the admin's name; an admin cannot disable or demote their own
account (a station must not lock itself out by a slip).
"""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from roadside.central.accounts import AccountError, Role
from roadside.central.i18n import _
from roadside.central.web.auth import Visit, api, page


def _list(v: Visit, error: str | None = None, status: int = 200) -> Response:
    console = v.request.app.state.console
    return console.render(
        v.request,
        "users.html",
        v.session,
        status_code=status,
        users=console.accounts.all(),
        roles=list(Role),
        error=error,
    )


@page(Role.ADMIN)
def users(v: Visit) -> Response:
    return _list(v)


@api(Role.ADMIN)
def add_user(v: Visit) -> Response:
    console = v.request.app.state.console
    name = v.field("name").lower()
    try:
        role = Role.parse(v.field("role"))
        console.accounts.add(name, role, v.field("password"))
    except AccountError as exc:
        return _list(v, _("The account was not made: %(why)s") % {"why": str(exc)}, 400)
    console.store.audit.record(v.officer.name, "user", {"add": name, "role": role.label})
    return RedirectResponse("/users", status_code=303)


@api(Role.ADMIN)
def change_user(v: Visit) -> Response:
    console = v.request.app.state.console
    name = v.request.path_params["name"]
    change = v.field("change")
    try:
        if name == v.officer.name and change in ("disable", "role"):
            raise AccountError(_("you cannot disable or demote your own account"))
        if change == "disable":
            console.accounts.set_active(name, False)
        elif change == "enable":
            console.accounts.set_active(name, True)
        elif change == "role":
            console.accounts.set_role(name, Role.parse(v.field("role")))
        elif change == "password":
            console.accounts.set_password(name, v.field("password"))
        else:
            raise AccountError(_("unknown change"))
    except AccountError as exc:
        return _list(v, _("The account was not changed: %(why)s") % {"why": str(exc)}, 400)
    console.store.audit.record(v.officer.name, "user", {change: name})
    return RedirectResponse("/users", status_code=303)


routes = [
    Route("/users", users, methods=["GET"]),
    Route("/users", add_user, methods=["POST"]),
    Route("/users/{name}", change_user, methods=["POST"]),
]
