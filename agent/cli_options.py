"""Options shared by the agent's commands."""

from __future__ import annotations

from pathlib import Path

import click

config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Agent config file (TOML), e.g. /etc/roadside/agent.toml.",
)
