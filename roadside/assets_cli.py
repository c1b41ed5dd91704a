"""``roadside model`` and ``roadside footage``: list, fetch and verify manifests' files."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from roadside import assets
from roadside.errors import AssetError

_store_option = click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding fetched files (default: $ROADSIDE_MODELS_DIR, "
    "/var/lib/roadside/models on a box, else ~/.local/share/roadside/models).",
)
_from_option = click.option(
    "--from",
    "source",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Copy from this folder instead of downloading (default: $ROADSIDE_SHARED/<kind>).",
)


def _group(kind: str, help_text: str) -> click.Group:
    @click.group(name=kind, help=help_text)
    def group() -> None:
        pass

    @group.command(name="list")
    @_store_option
    def list_cmd(store: Path | None) -> None:
        """List the known manifests and whether their files are in the store."""
        store = store or assets.default_store()
        table = Table(title=f"{kind}s (store: {store})")
        for col in ("name", "license", "state", "description"):
            table.add_column(col)
        for m in assets.manifests(kind).values():
            problems = assets.verify(m, store)
            state = "[green]ok[/]" if not problems else "[yellow]not fetched[/]"
            if problems and any("mismatch" in p for _, p in problems):
                state = "[red]corrupt[/]"
            table.add_row(m.name, m.license, state, m.description)
        Console().print(table)

    @group.command()
    @click.argument("name")
    @_from_option
    @_store_option
    def fetch(name: str, source: Path | None, store: Path | None) -> None:
        """Download NAME (or copy it with --from) into the store, checking its sha256."""
        m = assets.manifest(name, kind)
        store = store or assets.default_store()
        source = source or assets.default_source(kind)
        for path in assets.fetch(m, store, source):
            click.echo(f"ok {path}")

    @group.command()
    @click.argument("name")
    @_store_option
    def verify(name: str, store: Path | None) -> None:
        """Check that NAME's files are in the store with the right sha256."""
        m = assets.manifest(name, kind)
        store = store or assets.default_store()
        problems = assets.verify(m, store)
        for f in m.files:
            click.echo(f"{'ok' if f not in [p[0] for p in problems] else 'BAD'} {f.file}")
        if problems:
            raise AssetError("; ".join(p for _, p in problems))

    return group


model = _group("model", "Detection models: list, fetch NAME [--from DIR], verify NAME.")
footage = _group(
    "footage", "Sample footage for the demo: list, fetch NAME [--from DIR], verify NAME."
)
