"""The box's update client: take a release, install it beside the running one, switch, prove.

Steps, each reported on the retained ``update`` topic (``UpdateReport``):

1. ``downloading``: the station's chunked transfer (download.py) brings the release file;
   an offer of the version already running, or one too large, is refused before any chunk.
2. ``installing``: the signature and every wheel's sha256 are checked (roadside/release.py;
   a failure is ``refused`` and nothing changes), then a new slot is made (slots.py).
3. ``trial``: the trial is written, ``current`` switches to the new slot in one rename, and
   the agent exits so systemd starts the new release (the start guard runs first, trial.py).
4. The new release's agent watches its own health (``health``: the watchdog ready and
   pinging, the link up) for ``confirm_s`` within ``health_s`` of the switch: ``healthy``
   (it becomes the stable slot, old slots are pruned), or it switches back and exits, and
   the previous release reports ``rolled_back`` with why.

One install at a time, on a thread of its own (pip takes minutes on a Pi); a second release
that arrives meanwhile waits its turn.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from roadside import __version__
from roadside.agent.update.download import ReleaseDownloads
from roadside.agent.update.slots import InstallError, Slots
from roadside.agent.update.trial import Outcome, Trial, TrialBook, roll_back
from roadside.agent.uplink import Uplink
from roadside.config.agent import UpdateConfig
from roadside.errors import RoadsideError
from roadside.ids import new_id
from roadside.release import ReleaseError, load_public_key, open_release
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import UPDATE
from roadside.wire.update import UpdateReport, UpdateState

log = logging.getLogger(__name__)

UPDATE_DIR = "update"
HEALTH_LOOK_S = 1.0

Health = Callable[[], tuple[bool, str]]  # (healthy now, what is wrong or right)
Restart = Callable[[str], None]  # stop the agent so systemd starts it again; the reason


class UpdateService:
    """Owns the downloads, the installs and the trial of this box's releases."""

    def __init__(
        self,
        cfg: UpdateConfig,
        uplink: Uplink,
        data_dir: str | Path,
        health: Health,
        restart: Restart,
        running: str = __version__,
    ) -> None:
        self.cfg = cfg
        self.uplink = uplink
        self.folder = Path(data_dir) / UPDATE_DIR
        self.slots = Slots(cfg.root)
        self.book = TrialBook(self.folder)
        self.health = health
        self.restart = restart
        self.running = running
        self.downloads = ReleaseDownloads(
            uplink, self.folder, self._admit, self._arrived, self._progressed, cfg.max_bytes
        )
        self.outcomes: list[UpdateReport] = []  # every report made, for tests and benches
        self._queue: queue.Queue[tuple[str, str, Path] | None] = queue.Queue()
        self._stop = threading.Event()
        self._installer = threading.Thread(target=self._install_loop, name="update", daemon=True)
        self._watcher: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Before ``uplink.start``: tidy the slots, report the last outcome, watch a trial."""
        self.slots.recover()
        outcome = self.book.outcome()
        if outcome is not None:
            self._report(
                UpdateState(outcome.state),
                outcome.release,
                outcome.xid,
                code=outcome.code,
                detail=outcome.detail,
            )
        trial = self.book.trial()
        if trial is not None and trial.release == self.running:
            self._watcher = threading.Thread(
                target=self._watch, args=(trial,), name="update-health", daemon=True
            )
            self._watcher.start()
        self.downloads.start()
        self._installer.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._installer.join(10)
        if self._watcher is not None:
            self._watcher.join(5)
        self.downloads.stop()

    # -- the downloads' questions and news (the download worker) ------------------------
    def _admit(self, version: str) -> tuple[str, str] | None:
        if version == self.running:
            return ErrorCode.BAD_REQUEST, f"release {version} is running already"
        if self.book.trial() is not None:
            return ErrorCode.BUSY, "a release is on trial: offer again once it is decided"
        if self.slots.current() is None:
            return ErrorCode.UNAVAILABLE, (
                f"this box does not run from a release slot under {self.slots.opt}: "
                "nothing to go back to (install it with provisioning/install.sh)"
            )
        if not Path(self.cfg.release_key).is_file():
            return ErrorCode.UNAVAILABLE, f"no release key at {self.cfg.release_key}"
        return None

    def _progressed(self, version: str, xid: str, fraction: float) -> None:
        self._report(UpdateState.DOWNLOADING, version, xid, progress=round(fraction, 2))

    def _arrived(self, version: str, xid: str, path: Path) -> None:
        self._queue.put((version, xid, path))

    # -- the installer thread -------------------------------------------------------------
    def _install_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            version, xid, path = item
            try:
                self._take(version, xid, path)
            except Exception:
                log.exception("release %s: install failed unexpectedly", version)
                self._report(UpdateState.REFUSED, version, xid, code="failed", detail="see the log")
            finally:
                path.unlink(missing_ok=True)

    def _take(self, version: str, xid: str, path: Path) -> None:
        self._report(UpdateState.INSTALLING, version, xid)
        unpacked = self.folder / "unpacked" / version
        shutil.rmtree(unpacked, ignore_errors=True)
        try:
            release = open_release(path, load_public_key(Path(self.cfg.release_key)), unpacked)
            if release.manifest.version != version:
                raise ReleaseError("damaged", "the release is not the version it was offered as")
            previous = self.slots.current()
            if previous is None:
                raise InstallError("no current slot to go back to")
            self.slots.install(version, release.wheels)
        except ReleaseError as exc:
            self._refuse(version, xid, exc.code, str(exc))
            return
        except RoadsideError as exc:
            self._refuse(version, xid, "install", str(exc))
            return
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)
        if self._stop.is_set():
            return
        now = time.time()
        self.book.save_trial(Trial(version, previous, now, now + self.cfg.health_s, xid))
        self.slots.switch(version)
        self._report(
            UpdateState.TRIAL, version, xid, detail=f"switched from {previous}: restarting"
        )
        log.warning("release %s installed and current: restarting into it", version)
        self.restart(f"switch to release {version}")

    def _refuse(self, version: str, xid: str, code: str, why: str) -> None:
        log.error("release %s refused: %s", version, why)
        refused = Outcome(version, UpdateState.REFUSED.value, time.time(), code, why, xid)
        self.book.save_outcome(refused)
        self._report(UpdateState.REFUSED, version, xid, code=code, detail=why)

    # -- the new release proves itself (the health thread) ------------------------------
    def _watch(self, trial: Trial) -> None:
        healthy_since: float | None = None
        why = "not looked at yet"
        while not self._stop.wait(HEALTH_LOOK_S):
            ok, why = self.health()
            now = time.time()
            if ok:
                healthy_since = healthy_since or now
                if now - healthy_since >= self.cfg.confirm_s:
                    self._keep(trial)
                    return
            else:
                healthy_since = None
            if now > trial.deadline:
                detail = (
                    f"release {trial.release} was not healthy within {self.cfg.health_s:.0f} s: "
                    f"{why}"
                )
                log.error("%s: back to %s", detail, trial.previous)
                roll_back(self.slots, self.book, trial, detail, "unhealthy")
                self.restart(f"roll back to release {trial.previous}")
                return

    def _keep(self, trial: Trial) -> None:
        self.slots.mark_stable(trial.release)
        took = time.time() - trial.started
        detail = f"healthy {took:.0f} s after the switch from {trial.previous}"
        healthy = Outcome(trial.release, "healthy", time.time(), None, detail, trial.xid)
        self.book.save_outcome(healthy)
        self.book.end_trial()
        removed = self.slots.prune(self.cfg.keep)
        log.warning("release %s is healthy: kept (slots removed: %s)", trial.release, removed)
        self._report(UpdateState.HEALTHY, trial.release, trial.xid, detail=detail)

    # -- reports ---------------------------------------------------------------------------
    def _report(
        self,
        state: UpdateState,
        release: str,
        xid: str | None,
        progress: float | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        msg = UpdateReport(
            id=new_id(),
            state=state,
            release=release,
            running=self.running,
            transfer_id=xid,
            at=round(time.time(), 2),
            progress=progress,
            code=code,
            detail=detail,
        )
        self.outcomes.append(msg)
        self.uplink.publish(UPDATE, msg, retain=True)
