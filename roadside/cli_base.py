"""What every command group shares: deliberate errors as one line, not a traceback."""

from __future__ import annotations

import logging

import click

from roadside.errors import RoadsideError
from roadside.logs import line_prefix


class RoadsideGroup(click.Group):
    """A group that turns deliberate errors into one ``error: ...`` line on stderr and the
    error's exit code; used by the main group and by groups that also run on their own."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except RoadsideError as exc:
            click.echo(f"{line_prefix(logging.ERROR)}error: {exc}", err=True)
            ctx.exit(exc.exit_code)
