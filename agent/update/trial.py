"""A release on trial: the record that outlives the agent's restarts, and the start guard.

When the box switches to a new release it writes ``<data_dir>/update/trial.json`` (the new
and the previous version, the deadline) and restarts through systemd. From then on three
parties look at it:

- the start guard (``roadside agent update-guard``, systemd's ExecStartPre, run from the
  *stable* slot) counts the starts and, once the deadline has passed or the new release has
  failed to start ``max_starts`` times, switches ``current`` back;
- the stop hook (``roadside agent update-exited``, ExecStopPost, also from the stable slot)
  notes how each run ended (systemd's ``$SERVICE_RESULT``, ``$EXIT_STATUS``), so the reason
  of a rollback says "exited with status 1" rather than "timed out";
- the new release's own agent, once running, watches its health and either keeps the
  release (stable link, prune) or rolls back itself.

The outcome (``outcome.json``) is what the agent that runs next reports to the station.
Both files are written whole (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from roadside.agent.update.slots import Slots

TRIAL_FILE = "trial.json"
OUTCOME_FILE = "outcome.json"


@dataclass
class Trial:
    release: str
    previous: str
    started: float
    deadline: float  # epoch seconds: healthy by then, or rolled back
    xid: str | None = None  # the download that brought it
    starts: int = 0
    exits: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """The last word on a release, for the station: healthy, rolled_back or refused."""

    release: str
    state: str
    at: float
    code: str | None = None
    detail: str | None = None
    xid: str | None = None


class TrialBook:
    """The trial and outcome files in ``folder`` (``<data_dir>/update``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def trial(self) -> Trial | None:
        data = self._read(TRIAL_FILE)
        return Trial(**data) if data else None

    def save_trial(self, trial: Trial) -> None:
        self._write(TRIAL_FILE, asdict(trial))

    def end_trial(self) -> None:
        (self.folder / TRIAL_FILE).unlink(missing_ok=True)

    def outcome(self) -> Outcome | None:
        data = self._read(OUTCOME_FILE)
        return Outcome(**data) if data else None

    def save_outcome(self, outcome: Outcome) -> None:
        self._write(OUTCOME_FILE, asdict(outcome))

    def _read(self, name: str) -> dict | None:
        try:
            data = json.loads((self.folder / name).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, name: str, data: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / name)


def roll_back(slots: Slots, book: TrialBook, trial: Trial, why: str, code: str) -> None:
    """Back to the previous release: ``current`` to it, the outcome written, the trial ended."""
    slots.switch(trial.previous)
    book.save_outcome(Outcome(trial.release, "rolled_back", time.time(), code, why, trial.xid))
    book.end_trial()


def guard(slots: Slots, book: TrialBook, max_starts: int, now: float | None = None) -> str:
    """The start guard: one more start of a release on trial, or the rollback. What it did."""
    now = time.time() if now is None else now
    slots.recover()
    trial = book.trial()
    if trial is None:
        return "no release on trial"
    if slots.current() != trial.release:
        book.end_trial()  # switched back already (by hand, or a rollback cut short)
        return f"release {trial.release} is no longer current: trial ended"
    trial.starts += 1
    last = f" (last run: {trial.exits[-1]})" if trial.exits else ""
    if now > trial.deadline:
        why = f"release {trial.release} was not healthy within its health time{last}"
        roll_back(slots, book, trial, why, "unhealthy")
        return f"rolled back to {trial.previous}: {why}"
    if trial.starts > max_starts:
        why = f"release {trial.release} did not stay up: {trial.starts - 1} starts failed{last}"
        roll_back(slots, book, trial, why, "crashed")
        return f"rolled back to {trial.previous}: {why}"
    book.save_trial(trial)
    return f"release {trial.release} on trial: start {trial.starts} of {max_starts}"


def note_exit(book: TrialBook, env: dict[str, str]) -> str | None:
    """The stop hook: how this run ended, from systemd's variables, noted in the trial."""
    trial = book.trial()
    if trial is None:
        return None
    result = env.get("SERVICE_RESULT", "unknown")
    code, status = env.get("EXIT_CODE", ""), env.get("EXIT_STATUS", "")
    if code == "exited":
        said = f"exited with status {status}"
    elif code in ("killed", "dumped"):
        said = f"killed by signal {status}"
    else:
        said = result
    if result == "watchdog":
        said = "stopped by the systemd watchdog (no health pings)"
    trial.exits = [*trial.exits[-4:], said]
    book.save_trial(trial)
    return said
