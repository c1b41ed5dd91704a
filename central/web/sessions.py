"""Console logins: a random token in the officer's cookie, its sha256 in ``web_sessions``.

The database keeps only the digest, so a copy of the database opens no session; disabling an
account or changing its password deletes its sessions (``accounts.Accounts``). Each session
carries the CSRF token its forms must send back.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from roadside.central.accounts import Account, Accounts, Role
from roadside.central.store import tables as T


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    account: Account
    csrf: str
    expires: float


class SessionStore:
    """Safe from any thread (each call its own transaction)."""

    def __init__(self, engine: sa.Engine, accounts: Accounts, lifetime_s: float) -> None:
        self.engine = engine
        self.accounts = accounts
        self.lifetime_s = lifetime_s

    def open(self, account: Account) -> tuple[str, Session]:
        """A new session: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(account, secrets.token_urlsafe(32), now + self.lifetime_s)
        with self.engine.begin() as conn:
            conn.execute(T.web_sessions.delete().where(T.web_sessions.c.expires < now))
            conn.execute(
                T.web_sessions.insert().values(
                    id=_digest(token),
                    user=account.name,
                    csrf=session.csrf,
                    created=now,
                    expires=session.expires,
                )
            )
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of this token, with its account as it is now (one query)."""
        if not token or len(token) > 128:
            return None
        ws, u = T.web_sessions.c, T.users.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(ws.csrf, ws.expires, u.name, u.role, u.active, u.created, u.changed)
                .join_from(T.web_sessions, T.users, ws.user == u.name)
                .where(ws.id == _digest(token))
            ).first()
        if row is None or row.expires < time.time() or not row.active:
            return None
        account = Account(row.name, Role.parse(row.role), True, row.created, row.changed)
        return Session(account, row.csrf, row.expires)

    def close(self, token: str | None) -> None:
        if token:
            with self.engine.begin() as conn:
                conn.execute(T.web_sessions.delete().where(T.web_sessions.c.id == _digest(token)))
