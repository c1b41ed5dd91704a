"""``roadside agent upload``: send a file to the station, and finish interrupted uploads.

Uses the agent's own uplink and transfer sender (same state files under data_dir), so an
upload cut short by a power cut or a kill goes on from where the station stands when the
command, or the agent, runs again.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from roadside.agent.transfer.sender import TransferSender, device_signer
from roadside.agent.transfer.store import TransferRecord
from roadside.agent.uplink import Uplink
from roadside.config.agent import AgentConfig
from roadside.errors import ConfigError
from roadside.wire.transfer import TransferKind

log = logging.getLogger(__name__)


def upload(
    cfg: AgentConfig,
    path: Path | None,
    timeout: float | None = None,
    kind: TransferKind = "clip",
) -> list[TransferRecord]:
    """Resume stored uploads, start one for ``path`` (a copy; unless one of the same file is
    already running), and wait until all have ended or ``timeout`` passes."""
    if cfg.mqtt is None:
        raise ConfigError("uploading needs an [mqtt] section naming the station's broker")
    uplink = Uplink(cfg.device, cfg.mqtt, cfg.uplink, cfg.data_dir, heartbeat=False)
    sender = TransferSender(
        uplink, cfg.data_dir, cfg.transfer, device_signer(cfg.transfer, cfg.mqtt)
    )
    ended: list[TransferRecord] = []
    changed = threading.Event()

    def on_finished(rec: TransferRecord) -> None:
        ended.append(rec)
        changed.set()

    sender.on_finished.append(on_finished)
    sender.start()
    uplink.start()
    try:
        if path is not None and not any(t["name"] == path.name for t in sender.active()):
            copy = sender.outgoing / f"upload-{int(time.time() * 1000)}{path.suffix}"
            shutil.copyfile(path, copy)
            sender.send_file(copy, kind, _safe_name(path.name))
        deadline = None if timeout is None else time.monotonic() + timeout
        while sender.active():
            if deadline is not None and time.monotonic() > deadline:
                break
            changed.wait(0.5)
            changed.clear()
    finally:
        sender.stop()
        uplink.stop()
    return ended


def _safe_name(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    return (keep.lstrip("._-") or "file")[:128]
