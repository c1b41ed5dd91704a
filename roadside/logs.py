"""How every ``roadside`` process logs: to stderr, from INFO, in the journal's form under
systemd.

When stderr is the journal (systemd sets ``JOURNAL_STREAM`` to the ``device:inode`` of the
stream it gives the service, and it matches stderr), each line carries an sd-daemon priority
prefix (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug) and no timestamp, since
journald adds its own; ``journalctl -p warning`` then filters by it. Anywhere else a line is
``time LEVEL logger: message``.

The level starts at INFO; a service's ``[logging]`` table sets its own and per-module levels
when it starts, and ``-v`` / ``-q`` on the command line move the overall level from there.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Annotated, Literal, TextIO

from pydantic import BeforeValidator, Field, field_validator

from roadside.config.base import Section

READABLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
LADDER = sorted(LEVELS.values())  # what -v and -q step along
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


LevelName = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]


class LoggingConfig(Section):
    """``[logging]``: how much the service logs, overall and per module."""

    level: LevelName = Field(
        "info", description="Least severe level logged: debug, info, warning or error."
    )
    modules: dict[str, LevelName] = Field(
        default_factory=dict,
        description="Levels for single modules and their children, e.g. "
        '{ "roadside.agent.uplink" = "debug" }.',
    )

    @field_validator("modules")
    @classmethod
    def _module_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not MODULE.match(name):
                raise ValueError(
                    f"logging.modules: {name!r} is not a module name "
                    "(dotted, e.g. 'roadside.agent.uplink')"
                )
        return v


def journal_priority(levelno: int) -> int:
    """The syslog priority journald files a record of this level under."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journal stream systemd connected (``JOURNAL_STREAM``)."""
    dev, sep, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (sep and dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no file behind it (a test's buffer)
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalFormatter(logging.Formatter):
    """``<6>logger: message``, the prefix on every line of a record (a traceback's too), so
    that journald gives each line the record's priority."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{journal_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _Setup:
    """This process's logging once ``setup`` took it over: one handler, the -v/-q shift, the
    module levels set from a config (so a second ``apply`` can undo them)."""

    def __init__(self, handler: StderrHandler, journal: bool) -> None:
        self.handler = handler
        self.journal = journal
        self.shift = 0
        self.modules: list[str] = []


_setup: _Setup | None = None


def moved(level: int, shift: int) -> int:
    """``level`` (one of ``LEVELS``) moved ``shift`` steps along debug < info < warning <
    error, and no further than either end."""
    return LADDER[max(0, min(len(LADDER) - 1, LADDER.index(level) + shift))]


def setup(shift: int = 0, environ: Mapping[str, str] | None = None) -> None:
    """Log to stderr from INFO moved ``shift`` steps (each -v is -1, each -q +1), in the
    journal's form when stderr is the journal. Python warnings are logged too.

    A host that set up logging before (a program embedding the command line, a test runner)
    keeps its own handlers and levels, as with ``logging.basicConfig``.
    """
    global _setup
    root = logging.getLogger()
    if _setup is None:
        if root.handlers:
            return
        journal = is_journal(sys.stderr, os.environ if environ is None else environ)
        _setup = _Setup(StderrHandler(), journal)
        _setup.handler.setFormatter(
            JournalFormatter() if journal else logging.Formatter(READABLE_FORMAT)
        )
        root.addHandler(_setup.handler)
        logging.captureWarnings(True)
    _setup.shift = shift
    root.setLevel(moved(logging.INFO, shift))


def apply(cfg: LoggingConfig) -> None:
    """Take a service's ``[logging]`` table: its level (still moved by -v/-q) and its module
    levels, replacing those of an earlier ``apply``."""
    if _setup is None:
        return
    logging.getLogger().setLevel(moved(LEVELS[cfg.level], _setup.shift))
    for name in _setup.modules:
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, level in cfg.modules.items():
        logging.getLogger(name).setLevel(LEVELS[level])
    _setup.modules = list(cfg.modules)


def line_prefix(levelno: int) -> str:
    """The priority prefix for a line written to stderr outside logging (a command's one-line
    error or summary): ``<3>`` and so on in the journal, nothing elsewhere."""
    if _setup is None or not _setup.journal:
        return ""
    return f"<{journal_priority(levelno)}>"
