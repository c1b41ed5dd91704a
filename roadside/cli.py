"""The one console script, ``roadside``: every command hangs off this group."""

from __future__ import annotations

import click

from roadside import __version__, logs
from roadside.cli_base import LazyGroup

#: Every command, by the module that defines it. A command's module is imported only when that
#: command runs, so ``roadside agent run`` on a box does not load the station's database and web
#: stack (here 0.4 s of imports instead of 1.5 s; a Pi takes about four times as long).
COMMANDS = {
    "agent": "roadside.agent.cli:agent",
    "model": "roadside.assets_cli:model",
    "footage": "roadside.assets_cli:footage",
    "provision": "roadside.provisioning.cli:provision",
    "central": "roadside.central.cli:central",
    "fleet": "roadside.central.fleet.cli:fleet",
    "devices": "roadside.central.cli:devices_cmd",
    "events": "roadside.central.cli:events_cmd",
    "counts": "roadside.central.cli:counts_cmd",
    "clip": "roadside.central.cli:clip_group",
    "snapshot": "roadside.central.cli:snapshot_cmd",
    "audit": "roadside.central.cli:audit_cmd",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="roadside")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (debug).")
@click.option(
    "-q", "--quiet", count=True, help="Less log output: -q warnings and errors, -qq errors."
)
def main(verbose: int, quiet: int) -> None:
    """Roadside camera boxes: the on-box agent, models, provisioning and the station side."""
    logs.setup(shift=quiet - verbose)
