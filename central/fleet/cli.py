"""``roadside fleet``: see and change what every box runs, from the station.

Every command reads the central config (``--config``, or $ROADSIDE_CENTRAL_CONFIG) and runs
under an officer's account (``--officer NAME`` or $ROADSIDE_OFFICER); each is audited.
Commands hang off ``fleet``: ``status`` and ``config`` here, software updates beside them.
"""

from __future__ import annotations

import click


@click.group("fleet")
def fleet() -> None:
    """Every box's config and software: status, config get/set."""
