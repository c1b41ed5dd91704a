"""Where the real model weights and footage are: ``$ROADSIDE_SHARED``, else ``shared/`` beside
the clone. They are never part of the project (see ``roadside.assets``)."""

from __future__ import annotations

import os
from pathlib import Path

from roadside.assets import ENV_SHARED

CLONE = Path(__file__).resolve().parents[2]  # roadside/testing/ -> the checkout (editable)


def shared_dir() -> Path:
    """The shared folder, holding ``models/`` and ``footage/``."""
    return Path(os.environ.get(ENV_SHARED, CLONE.parent / "shared")).resolve()


def models_dir() -> Path:
    return shared_dir() / "models"


def footage_dir() -> Path:
    return shared_dir() / "footage"
