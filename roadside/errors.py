"""Every error the product raises on purpose, in one place.

Each carries a sentence written for the person at the keyboard; the command line prints
that sentence alone (no traceback) and exits non-zero.
"""


class RoadsideError(Exception):
    """Base of every deliberate error: its message is shown to the user as is."""


class ConfigError(RoadsideError):
    """The configuration file is missing, unreadable or invalid."""


class AssetError(RoadsideError):
    """A model or footage asset is missing, corrupt or cannot be fetched."""


class SourceError(RoadsideError):
    """A frame source cannot be opened or has failed for good."""


class DetectorError(RoadsideError):
    """The detector cannot load its model or run it."""


class ProvisionError(RoadsideError):
    """A certificate, bundle or broker file cannot be made, read or applied."""


class StateFileError(RoadsideError):
    """A SQLite state file cannot be used as it is (written by a newer release)."""
