"""``roadside central web`` (serve the console) and ``roadside central user`` (accounts)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from roadside.central.config import ENV_CONFIG, load_central_config

_config = click.option(
    "--config",
    "config_path",
    envvar=ENV_CONFIG,
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Central config file (TOML); default ${ENV_CONFIG}, else /etc/roadside/central.toml.",
)


@click.command("web")
@_config
@click.option("--host", default=None, help="Listen on this address (default: web.host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default: web.port.")
def web_cmd(config_path: Path | None, host: str | None, port: int | None) -> None:
    """Serve the officers' console (needs: pip install 'roadside[web]')."""
    from roadside.central.web.server import WebServer

    cfg = load_central_config(config_path)
    if host:
        cfg.web.host = host
    if port:
        cfg.web.port = port
    WebServer(cfg).run()


def _accounts(config_path: Path | None):
    from roadside.central.accounts import Accounts
    from roadside.central.store import Store

    cfg = load_central_config(config_path)
    store = Store(cfg.database_url, cfg.database.echo)
    return store, Accounts(store.engine)


def _password(password_stdin: bool) -> str:
    if password_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group("user")
def user_group() -> None:
    """Officers' accounts: roadside central user add NAME --role viewer|investigator|admin."""


@user_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "investigator", "admin"]),
    required=True,
    help="viewer: boxes, events, counts; investigator: also footage and the audit log; "
    "admin: also accounts.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@_config
def user_add(name: str, role: str, password_stdin: bool, config_path: Path | None) -> None:
    """Make an account (asks for its password)."""
    from roadside.central.accounts import Role
    from roadside.central.store.audit import who_am_i

    store, accounts = _accounts(config_path)
    try:
        account = accounts.add(name.lower(), Role.parse(role), _password(password_stdin))
        store.audit.record(who_am_i(), "user", {"add": account.name, "role": role})
    finally:
        store.close()
    click.echo(f"account {account.name}: {account.role.label}")


@user_group.command("list")
@_config
def user_list(config_path: Path | None) -> None:
    """Every account, its role and whether it may log in."""
    store, accounts = _accounts(config_path)
    try:
        for a in accounts.all():
            click.echo(f"{a.name:<32} {a.role.label:<13} {'active' if a.active else 'disabled'}")
    finally:
        store.close()


@user_group.command("disable")
@click.argument("name")
@_config
def user_disable(name: str, config_path: Path | None) -> None:
    """Stop an account from logging in (its open sessions end now)."""
    from roadside.central.store.audit import who_am_i

    store, accounts = _accounts(config_path)
    try:
        accounts.set_active(name, False)
        store.audit.record(who_am_i(), "user", {"disable": name})
    finally:
        store.close()
    click.echo(f"account {name}: disabled")


@user_group.command("enable")
@click.argument("name")
@_config
def user_enable(name: str, config_path: Path | None) -> None:
    """Let a disabled account log in again."""
    from roadside.central.store.audit import who_am_i

    store, accounts = _accounts(config_path)
    try:
        accounts.set_active(name, True)
        store.audit.record(who_am_i(), "user", {"enable": name})
    finally:
        store.close()
    click.echo(f"account {name}: active")


@user_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@_config
def user_passwd(name: str, password_stdin: bool, config_path: Path | None) -> None:
    """Set an account's password (its open sessions end now)."""
    from roadside.central.store.audit import who_am_i

    store, accounts = _accounts(config_path)
    try:
        accounts.set_password(name, _password(password_stdin))
        store.audit.record(who_am_i(), "user", {"password": name})
    finally:
        store.close()
    click.echo(f"account {name}: password set")
