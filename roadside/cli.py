"""The one console script, ``roadside``: every command hangs off this group."""

from __future__ import annotations

import click

from roadside import __version__, logs
from roadside.cli_base import RoadsideGroup


@click.group(cls=RoadsideGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="roadside")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (debug).")
@click.option(
    "-q", "--quiet", count=True, help="Less log output: -q warnings and errors, -qq errors."
)
def main(verbose: int, quiet: int) -> None:
    """Roadside camera boxes: the on-box agent, models, provisioning and the station side."""
    logs.setup(shift=quiet - verbose)


def _register() -> None:
    from roadside.agent.cli import agent
    from roadside.assets_cli import footage, model
    from roadside.central.cli import OFFICER_COMMANDS, central
    from roadside.central.fleet.cli import fleet
    from roadside.provisioning.cli import provision

    main.add_command(agent)
    main.add_command(model)
    main.add_command(footage)
    main.add_command(provision)
    main.add_command(central)
    main.add_command(fleet)
    for command in OFFICER_COMMANDS:
        main.add_command(command)


_register()
