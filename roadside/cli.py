"""The one console script, ``roadside``: every command hangs off this group."""

from __future__ import annotations

import logging
import sys

import click

from roadside import __version__
from roadside.errors import RoadsideError


class RoadsideGroup(click.Group):
    """A group that turns deliberate errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RoadsideError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=RoadsideGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="roadside")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Roadside camera boxes: the on-box agent, models, provisioning and the station side."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    from roadside.agent.cli import agent
    from roadside.assets_cli import footage, model
    from roadside.central.cli import OFFICER_COMMANDS, central
    from roadside.provisioning.cli import provision

    main.add_command(agent)
    main.add_command(model)
    main.add_command(footage)
    main.add_command(provision)
    main.add_command(central)
    for command in OFFICER_COMMANDS:
        main.add_command(command)


_register()
