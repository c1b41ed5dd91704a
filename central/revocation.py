"""The device CA and revocation list the receiver checks uploads against, kept current.

A box revoked at the CA (``roadside provision revoke``, which rewrites ``crl.pem``) must be
refused from its next upload on, not from the station's next restart. The list's file is
looked at (size, time, inode: ``crl.pem`` is replaced whole) at most every
``receiver.crl_check_s`` seconds (5), on the thread that admits uploads, and read again when
it changed. A list that no longer reads (damaged, half copied, gone) leaves the previous one
in force with an ERROR line, once per change of the file.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from roadside.errors import RoadsideError
from roadside.evidence import Trust

log = logging.getLogger(__name__)

_Stamp = tuple[int, int, int]


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class WatchedTrust:
    """``Trust.load(ca_path, crl_path)``, loaded again when the revocation list changes.

    Call ``current`` from one thread (the receiver's). The first load raises like
    ``Trust.load``: a station that cannot read its CA or list at start must not run.
    """

    def __init__(
        self, ca_path: str | Path, crl_path: str | Path | None = None, check_s: float = 5.0
    ) -> None:
        self.ca_path = Path(ca_path)
        self.crl_path = None if crl_path is None else Path(crl_path)
        self.check_s = check_s
        self._stamp = None if self.crl_path is None else _stamp(self.crl_path)
        self._trust = Trust.load(self.ca_path, self.crl_path)
        self._next_check = time.monotonic() + check_s

    def current(self) -> Trust:
        """The trust in force: the list as the file now holds it, if it reads."""
        if self.crl_path is None or time.monotonic() < self._next_check:
            return self._trust
        self._next_check = time.monotonic() + self.check_s
        stamp = _stamp(self.crl_path)
        if stamp == self._stamp:
            return self._trust
        self._stamp = stamp
        try:
            trust = Trust.load(self.ca_path, self.crl_path)
        except RoadsideError as exc:
            log.error("receiver: %s; the revocation list read before stays in force", exc)
            return self._trust
        revoked = sum(len(list(crl)) for crl in trust.crls)
        log.info("receiver: revocation list %s read again (%d revoked)", self.crl_path, revoked)
        self._trust = trust
        return trust
