"""What every command group shares: deliberate errors as one line, not a traceback."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

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


class LazyGroup(RoadsideGroup):
    """A group whose commands are named in ``lazy`` (name: ``module:attribute``) and imported
    only when one runs: a box's start and its update guard do not load what they never use."""

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self.lazy.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, attr = where.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command), where
        return command
