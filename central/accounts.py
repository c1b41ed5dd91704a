"""Officers' accounts: names, roles, argon2 password hashes; who may do what at the station.

Roles rise: a viewer sees boxes, events and counts; an investigator also asks boxes for
clips, pictures and live view and reads the audit log; an admin also manages accounts. The
console logs officers in against these accounts, and the officer command line names one with
``--officer`` (or $ROADSIDE_OFFICER): every request is audited under the account's name.

Hashing needs argon2-cffi (the ``web`` extra); checking a name and role does not.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from roadside.central.i18n import _
from roadside.central.store import tables as T
from roadside.errors import UsageError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

ENV_OFFICER = "ROADSIDE_OFFICER"
MIN_PASSWORD = 10
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")


class AccountError(UsageError):
    """An account cannot be made, changed or used as asked."""


class Role(enum.IntEnum):
    """What an account may do; each role includes the ones below it."""

    VIEWER = 1
    INVESTIGATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise AccountError(
                _("%(text)s is not a role; use viewer, investigator or admin")
                % {"text": repr(text)}
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    active: bool
    created: float
    changed: float

    def may(self, needed: Role) -> bool:
        return self.active and self.role >= needed


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise AccountError(
            _(
                "%(name)s is not an account name: 2-32 lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
            % {"name": repr(name)}
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(
            _("the password must be at least %(n)d characters") % {"n": MIN_PASSWORD}
        )
    return password


def hasher() -> PasswordHasher:
    try:
        from argon2 import PasswordHasher
    except ModuleNotFoundError:
        raise AccountError("passwords need argon2-cffi: pip install 'roadside[web]'") from None
    return PasswordHasher()


def _account(row: Any) -> Account:
    return Account(row.name, Role.parse(row.role), bool(row.active), row.created, row.changed)


class Accounts:
    """The users table; each call is its own transaction, safe from any thread."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(T.users).where(T.users.c.name == name)).first()
        return _account(row) if row else None

    def all(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(T.users).order_by(T.users.c.name)).all()
        return [_account(r) for r in rows]

    def add(self, name: str, role: Role, password: str) -> Account:
        check_name(name)
        digest = hasher().hash(check_password(password))
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    T.users.insert().values(
                        name=name,
                        role=role.label,
                        password_hash=digest,
                        active=True,
                        created=now,
                        changed=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise AccountError(
                _("there is already an account %(name)s") % {"name": repr(name)}
            ) from None
        return Account(name, role, True, now, now)

    def _change(self, name: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                T.users.update().where(T.users.c.name == name).values(changed=time.time(), **values)
            )
            if done.rowcount == 0:
                raise AccountError(_("there is no account %(name)s") % {"name": repr(name)})
            if values.get("active") is False or "password_hash" in values:
                # A disabled account or a new password ends every open console session.
                conn.execute(T.web_sessions.delete().where(T.web_sessions.c.user == name))

    def set_password(self, name: str, password: str) -> None:
        self._change(name, password_hash=hasher().hash(check_password(password)))

    def set_role(self, name: str, role: Role) -> None:
        self._change(name, role=role.label)

    def set_active(self, name: str, active: bool) -> None:
        self._change(name, active=active)

    def verify(self, name: str, password: str) -> Account | None:
        """The account when ``password`` is its password and it is active, else None.

        An unknown name costs one hash too, so timing does not tell which names exist.
        """
        from argon2.exceptions import InvalidHashError, VerificationError

        ph = hasher()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(T.users).where(T.users.c.name == name)).first()
        if row is None:
            ph.hash(password or "-")
            return None
        try:
            ph.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        account = _account(row)
        if ph.check_needs_rehash(row.password_hash):
            with self.engine.begin() as conn:
                conn.execute(
                    T.users.update()
                    .where(T.users.c.name == name)
                    .values(password_hash=ph.hash(password))
                )
        return account if account.active else None


def identify(accounts: Accounts, name: str | None, needed: Role) -> Account:
    """The officer a command line names, checked: known, active, allowed ``needed``."""
    if not name:
        raise AccountError(
            _(
                "say who is asking: --officer NAME or $%(env)s (an account made with "
                "`roadside central user add`)"
            )
            % {"env": ENV_OFFICER}
        )
    account = accounts.get(name)
    if account is None:
        raise AccountError(
            _("there is no account %(name)s (see `roadside central user list`)")
            % {"name": repr(name)}
        )
    if not account.active:
        raise AccountError(_("the account %(name)s is disabled") % {"name": repr(name)})
    if not account.may(needed):
        raise AccountError(
            _("the account %(name)s is a %(role)s; this needs %(needed)s or above")
            % {"name": repr(name), "role": account.role.label, "needed": needed.label}
        )
    return account
