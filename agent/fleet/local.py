"""The config file the agent runs, and the two small files beside it that make changes safe.

Beside ``agent.toml`` (the ``--config`` file):

- ``agent.toml.previous``: the config that ran before the last change, for the way back;
- ``agent.toml.trial``: the record of a change not yet finished (JSON): which request, the
  new and the previous hash, how many starts the new config had, and how it ended.

A change is written in this order, each step atomic (``files.write_atomic``): the current file
is copied to ``.previous``, the trial record is written (state TRYING), the new config replaces
the current file. A power cut or a kill between any two steps leaves one whole config, and
``at_start`` (run before the config is read, at every start) finds out which and finishes the
story: a new config never put in place is reported as such; one on trial counts a start, and
after ``max_starts`` starts without being confirmed (the agent keeps exiting at start: a crash
loop) it is rolled back; a rollback interrupted half-way is completed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from roadside.agent.fleet.files import remove_durably, write_atomic
from roadside.config.agent import AgentConfig, load_config
from roadside.config.document import config_hash
from roadside.errors import ConfigError

log = logging.getLogger(__name__)

PREVIOUS_SUFFIX = ".previous"
TRIAL_SUFFIX = ".trial"


class TrialState(StrEnum):
    """Where a config change stands on the box."""

    TRYING = "trying"  # the new config is in place, running or about to, not yet confirmed
    CONFIRMED = "confirmed"  # it stayed healthy: current (the reply may still be unsent)
    ROLLED_BACK = "rolled_back"  # it failed: the previous config is (being) put back


@dataclass
class Trial:
    """The record of one change (``agent.toml.trial``)."""

    request_id: str
    requester: str | None
    config_hash: str
    previous_hash: str
    health_s: float
    max_starts: int
    link_change: bool  # the change may cut the box off: the broker must be reached
    asked: float  # epoch s: when the box took the request
    state: TrialState = TrialState.TRYING
    starts: int = 0  # starts of the agent with the new config
    reason: str = ""  # rolled back: why
    ended: float | None = None  # epoch s: confirmed or rolled back

    @classmethod
    def from_json(cls, text: str) -> Trial:
        data = json.loads(text)
        data["state"] = TrialState(data["state"])
        return cls(**data)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def file_hash(path: Path) -> str | None:
    """The hash of the config in ``path``, or None when it does not load."""
    try:
        return config_hash(load_config(path))
    except ConfigError:
        return None


class LocalConfig:
    """The ``--config`` file and its companions; ``trial`` is the change in progress, if any.

    Used by the command thread (a new change), the trial check's thread (its verdict) and the
    start-up code; a change is one at a time (the service refuses a second), so no lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous_path = path.with_name(path.name + PREVIOUS_SUFFIX)
        self.trial_path = path.with_name(path.name + TRIAL_SUFFIX)
        self.trial: Trial | None = None

    @property
    def trying(self) -> bool:
        return self.trial is not None and self.trial.state == TrialState.TRYING

    # -- at every start, before the config is read --------------------------------------
    def at_start(self) -> None:
        """Finish what an earlier run left of a change; count this start of a config on trial."""
        trial = self.trial = self._load_trial()
        if trial is None:
            return
        now = file_hash(self.path)
        if trial.state == TrialState.TRYING:
            if now == trial.config_hash:
                if trial.starts >= trial.max_starts:
                    self.roll_back(
                        f"the agent stopped {trial.starts} times with the new config before "
                        "it was confirmed (a crash loop at start)"
                    )
                    return
                trial.starts += 1
                self._save(trial)
                log.warning(
                    "config %s on trial (request %s): start %d of %d, health check %.0f s",
                    trial.config_hash,
                    trial.request_id,
                    trial.starts,
                    trial.max_starts,
                    trial.health_s,
                )
            elif now is None:
                self.roll_back("the new config did not load at start")
            else:
                self._end(
                    trial,
                    "the box was interrupted before the new config was in place; it runs "
                    "the previous one"
                    if now == trial.previous_hash
                    else "the config file was changed on the box during the change; it runs "
                    "that file",
                )
        elif trial.state == TrialState.ROLLED_BACK and now in (trial.config_hash, None):
            self._restore()  # a rollback interrupted before the old file was back

    # -- a change -----------------------------------------------------------------------
    def begin(self, trial: Trial, text: bytes) -> None:
        """Put a validated config in place, on trial; the agent must restart to run it."""
        write_atomic(self.previous_path, self.path.read_bytes())
        self._save(trial)
        write_atomic(self.path, text)
        self.trial = trial

    def confirm(self) -> Trial:
        trial = self._current()
        trial.state, trial.ended = TrialState.CONFIRMED, time.time()
        self._save(trial)
        log.warning("config %s confirmed healthy: it is current", trial.config_hash)
        return trial

    def roll_back(self, reason: str) -> None:
        """Record why, then put the previous config back (that order: see ``at_start``)."""
        trial = self._current()
        self._end(trial, reason)
        self._restore()

    def finished(self) -> None:
        """The change's final reply is stored: forget the record."""
        remove_durably(self.trial_path)
        self.trial = None

    def status_hashes(self, cfg: AgentConfig) -> tuple[str, str | None]:
        """(current, on trial) for the status message: a config on trial is not current yet."""
        if self.trial is not None and self.trial.state == TrialState.TRYING:
            return self.trial.previous_hash, self.trial.config_hash
        return config_hash(cfg), None

    # -- named steps --------------------------------------------------------------------
    def _current(self) -> Trial:
        if self.trial is None:
            raise RuntimeError("no config change in progress")
        return self.trial

    def _end(self, trial: Trial, reason: str) -> None:
        trial.state, trial.reason, trial.ended = TrialState.ROLLED_BACK, reason, time.time()
        self._save(trial)
        log.error("config %s rolled back: %s", trial.config_hash, reason)

    def _restore(self) -> None:
        try:
            previous = self.previous_path.read_bytes()
        except OSError as exc:
            log.error("cannot put the previous config back from %s: %s", self.previous_path, exc)
            return
        write_atomic(self.path, previous)
        log.warning("previous config restored from %s", self.previous_path)

    def _load_trial(self) -> Trial | None:
        try:
            text = self.trial_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return Trial.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            # Written atomically, so only a failing card gets here: keep the config as it is.
            log.error(
                "%s is damaged (%s): the config change it recorded is forgotten",
                self.trial_path,
                exc,
            )
            remove_durably(self.trial_path)
            return None

    def _save(self, trial: Trial) -> None:
        write_atomic(self.trial_path, trial.to_json())
