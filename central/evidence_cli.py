"""``roadside clip verify FILE``: check a clip against the box's signature, offline.

Needs only the file, its ``<file>.evidence.json`` (kept beside it at the station, handed on
with it) and the device CA certificate; with the CA's revocation list (``crl.pem``) it also
checks the box's certificate was not revoked. No database, broker or station config: a
prosecutor's clerk can run it on a copy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from roadside.errors import ExitCode, UsageError
from roadside.evidence import (
    EvidenceError,
    Trust,
    read_sidecar,
    sidecar_path,
    verify_evidence,
)


def verify_clip(
    file: Path, evidence_path: Path | None, ca: Path, crl: Path | None, as_json: bool
) -> int:
    """Check ``file``; prints what holds (or the first check that failed); the exit code."""
    evidence_path = evidence_path or sidecar_path(file)
    if not file.is_file():
        raise UsageError(f"{file}: no such file")
    try:
        raw = evidence_path.read_bytes()
    except OSError:
        raise UsageError(
            f"{evidence_path}: no evidence file beside the clip (give it with --evidence)"
        ) from None
    trust = Trust.load(ca, crl)
    try:
        verified = verify_evidence(read_sidecar(raw), trust, file=file)
    except EvidenceError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "check": exc.failure.value, "why": str(exc)}))
        else:
            click.echo(f"NOT VERIFIED: {file.name}: {exc}")
        return ExitCode.FAILED
    m = verified.manifest
    if as_json:
        doc = {
            "ok": True,
            "manifest": m.model_dump(exclude_none=True),
            "serial": f"{verified.serial:x}",
            "issuer": verified.issuer,
            "revocation_checked": verified.revocation_checked,
        }
        click.echo(json.dumps(doc))
        return ExitCode.OK
    revocation = "not revoked" if verified.revocation_checked else "revocation NOT checked (--crl)"
    lines = [
        f"VERIFIED: {file.name}",
        f"  sha256      {m.sha256} ({m.size} bytes), as signed",
        f"  signed by   {m.device} (certificate {verified.serial:x}, {revocation})",
        f"  issuer      {verified.issuer}",
        f"  footage     {_when(m.actual_from)} to {_when(m.actual_to)}",
        f"  request     {m.request_id or '(none)'}, transfer {m.xid}, software {m.software}",
        f"  signed at   {_when(m.signed_at)} (the box's clock)",
    ]
    click.echo("\n".join(lines))
    return ExitCode.OK


def _when(t: float | None) -> str:
    return "?" if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
