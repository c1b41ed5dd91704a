"""Every error the product raises on purpose, in one place, and the exit codes they give.

Each carries a sentence written for the person at the keyboard; the command line prints
that sentence alone (no traceback) and exits with the error's ``exit_code``: a script can
tell "asked wrongly" (fix the command or the file) from "asked rightly, and it failed"
(retry, look at the box).
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """What every ``roadside`` command returns."""

    OK = 0
    FAILED = 1  # the command ran and what it was asked to do failed
    USAGE = 2  # the command cannot run as asked: an option, argument, input or config is wrong
    PENDING = 3  # the request is on its way and has no final answer yet (officer commands)
    # Service faults, numbered as sysexits.h; roadside-central.service restarts on 69 only:
    UNAVAILABLE = 69  # the broker never answered (down, or a wrong host or port)
    CANT_CREATE = 73  # a folder the service writes to (data_dir, clips) cannot be written
    NO_PERMISSION = 77  # the broker refused our credentials: restarting cannot fix that
    # ``roadside agent run`` only: start me again (a new config to apply, or one to undo);
    # EX_TEMPFAIL, which the systemd unit always restarts (RestartForceExitStatus).
    RESTART = 75


class RoadsideError(Exception):
    """Base of every deliberate error: its message is shown to the user as is."""

    exit_code = ExitCode.FAILED


class UsageError(RoadsideError):
    """What was asked cannot be done as written: a bad option value, input or config."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration file is missing, unreadable or invalid."""


class AssetError(RoadsideError):
    """A model or footage asset is missing, corrupt or cannot be fetched."""


class SourceError(RoadsideError):
    """A frame source cannot be opened or has failed for good."""


class DetectorError(RoadsideError):
    """The detector cannot load its model or run it."""


class UnknownAssetError(AssetError, UsageError):
    """No manifest has the name asked for."""


class ProvisionError(UsageError):
    """A certificate, bundle or broker file cannot be made from what was given."""


class StateFileError(RoadsideError):
    """A SQLite state file cannot be used as it is (written by a newer release)."""


class UnwritableError(RoadsideError):
    """A folder the service must write to cannot be made or written."""

    exit_code = ExitCode.CANT_CREATE
