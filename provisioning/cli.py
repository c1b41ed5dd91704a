"""``roadside provision``: the technician's commands, run in the station.

Every input is checked before the CA is unlocked, so a typo costs no passphrase prompt and
no certificate serial. The CA passphrase comes from ``--passphrase-file``, the
``ROADSIDE_CA_PASSPHRASE`` environment variable or a hidden prompt; it is never echoed.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import click

from roadside.cli_base import RoadsideGroup
from roadside.errors import ProvisionError

from . import release as rel
from . import wheelhouse as wh
from .agent_toml import (
    check_site,
    parse_broker,
    parse_location,
    source_table,
)
from .broker import BrokerFiles, refresh_broker_dir, station_ca_officers, write_broker_dir
from .ca import STATION_CA, ProjectCA, cert_pem, ensure_no_ca, key_pem, new_key
from .cloudinit import write_card
from .device import DeviceRequest, make_bundle
from .files import read_bytes, write_atomic
from .identity import account_role, check_device_id
from .registry import Registry

PASSPHRASE_ENV = "ROADSIDE_CA_PASSPHRASE"
RELEASE_PASSPHRASE_ENV = "ROADSIDE_RELEASE_PASSPHRASE"


def _passphrase(
    passphrase_file: Path | None,
    confirm: bool = False,
    env: str = PASSPHRASE_ENV,
    what: str = "CA",
) -> bytes:
    if passphrase_file is not None:
        try:
            mode = passphrase_file.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            click.echo(f"warning: {passphrase_file} is readable by others; chmod 600 it", err=True)
        raw = read_bytes(passphrase_file, "passphrase file")
        return raw.removesuffix(b"\n").removesuffix(b"\r")
    if os.environ.get(env):
        return os.environ[env].encode("utf-8")
    if sys.stdin.isatty():
        text = click.prompt(f"{what} passphrase", hide_input=True, confirmation_prompt=confirm)
        return text.encode("utf-8")
    raise ProvisionError(f"no {what} passphrase: pass --passphrase-file FILE or set {env}")


_passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ROADSIDE_CA_PASSPHRASE_FILE",
    help=f"File holding the CA passphrase (default: ${PASSPHRASE_ENV}, else a prompt).",
)
_ca_option = click.option(
    "--ca",
    "ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ROADSIDE_CA_DIR",
    required=True,
    help="The CA folder made by `provision ca init` (default: $ROADSIDE_CA_DIR).",
)


def _open_ca(ca_dir: Path, passphrase_file: Path | None) -> ProjectCA:
    Registry.load(ca_dir / "issued.json")  # a wrong folder fails before the prompt
    return ProjectCA.open(ca_dir, _passphrase(passphrase_file))


def _refresh_broker(ca_obj: ProjectCA, broker_dir: Path | None = None) -> None:
    """Bring the broker folder's ACL and CRL up to date after a change of who is who."""
    recorded = ca_obj.registry.broker_dir
    target = broker_dir or (Path(recorded) if recorded else None)
    if target and target.is_dir():
        refresh_broker_dir(ca_obj, BrokerFiles(target))
        click.echo(f"updated {target}/dynamic-security.json and {target}/crl.pem")
        _warn_station_ca_officers(ca_obj)
        click.echo(
            "On the broker host: copy dynamic-security.json and crl.pem, then `systemctl "
            "restart mosquitto` (the plugin reads its file at start; sessions are kept)."
        )
    else:
        click.echo(
            f"CRL written to {ca_obj.directory}/crl.pem; no broker folder to update "
            "(run `provision broker` to render its ACL)"
        )


def _warn_station_ca_officers(ca_obj: ProjectCA) -> None:
    for name in station_ca_officers(ca_obj):
        click.echo(
            f"warning: {name} holds a station-CA certificate, which the station listener still "
            f"takes: issue a new one with `provision account {name} --replace`",
            err=True,
        )


@click.group(cls=RoadsideGroup)
def provision() -> None:
    """Certificates, device bundles, broker TLS/ACL and offline installs for boxes."""


@provision.group()
def ca() -> None:
    """The project CA folder (device CA + station CA)."""


@ca.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--org",
    default="Roadside",
    show_default=True,
    help="Organisation name put in every certificate.",
)
@click.option(
    "--days",
    type=click.IntRange(365, 36500),
    default=7300,
    show_default=True,
    help="How long the CA certificates are valid.",
)
@_passphrase_option
def ca_init(directory: Path, org: str, days: int, passphrase_file: Path | None) -> None:
    """Create DIRECTORY with a device CA and a station CA, keys under one passphrase."""
    ensure_no_ca(directory)  # before asking for a passphrase
    ca_obj = ProjectCA.create(directory, _passphrase(passphrase_file, confirm=True), org, days)
    click.echo(f"CA folder {ca_obj.directory} ready:")
    click.echo("  device-ca.crt   signs box certificates (the broker trusts it for clients)")
    click.echo("  station-ca.crt  signs the broker and station accounts (boxes trust it)")
    click.echo("Keep the folder and its passphrase apart, and back both up offline.")


@provision.command()
@click.argument("name")
@_ca_option
@click.option("--site", required=True, help="Where the box stands, for people (one line).")
@click.option("--location", required=True, help="LAT,LON in decimal degrees, e.g. 46.49,11.35.")
@click.option(
    "--camera",
    default="picamera2",
    show_default=True,
    help="picamera2, an rtsp://... URL or /dev/videoN.",
)
@click.option(
    "--status-led",
    type=click.IntRange(0, 27),
    default=None,
    help="BCM GPIO of the box's status LED, if it has one.",
)
@click.option(
    "--broker",
    "broker_addr",
    default=None,
    help="host[:port] of the broker (default: the one set by `provision broker`).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for NAME.bundle.tar.gz.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 36500),
    default=3650,
    show_default=True,
    help="Certificate validity.",
)
@click.option(
    "--replace", is_flag=True, help="NAME already has a certificate: revoke it and issue a new one."
)
@click.option(
    "--cloud-init",
    "cloud_init",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also fill this folder for the SD card's boot partition.",
)
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="With --cloud-init: copy this wheelhouse onto the card too.",
)
@_passphrase_option
def device(
    name: str,
    ca_dir: Path,
    site: str,
    location: str,
    camera: str,
    status_led: int | None,
    broker_addr: str | None,
    out: Path,
    days: int,
    replace: bool,
    cloud_init: Path | None,
    wheelhouse: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Make the bundle for box NAME: key, certificate, agent.toml, CA and broker address."""
    check_device_id(name)
    loc = parse_location(location)
    site = check_site(site)
    source_table(camera)
    if broker_addr is None:
        recorded = Registry.load(ca_dir / "issued.json").broker
        if not recorded:
            raise ProvisionError(
                "no broker address: pass --broker host:port or run `provision broker` first"
            )
        broker_addr = recorded
    broker = parse_broker(broker_addr)
    ca_obj = _open_ca(ca_dir, passphrase_file)
    req = DeviceRequest(
        name=name, site=site, location=loc, broker=broker, camera=camera, status_led=status_led
    )
    path = make_bundle(ca_obj, req, out, days=days, replace=replace)
    click.echo(f"bundle {path} (holds the box's private key: keep it private, mode 0600)")
    _refresh_broker(ca_obj)  # the box's role; with --replace, the old certificate's CRL entry
    if cloud_init:
        serial = f"{ca_obj.registry.live(name)[-1].serial:x}"
        write_card(cloud_init, name, serial, path, wheelhouse)
        click.echo(f"boot partition files in {cloud_init}: copy its contents onto the card")


@provision.command()
@click.argument("name")
@_ca_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write NAME/client.crt, client.key and ca.crt into.",
)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--replace", is_flag=True, help="Revoke NAME's current certificate first.")
@_passphrase_option
def account(
    name: str, ca_dir: Path, out: Path, days: int, replace: bool, passphrase_file: Path | None
) -> None:
    """A station certificate: central.<name> (the station's services, port 8884) or
    officer.<name> (commands only, the officer listener, port 8885)."""
    role = account_role(name)
    ca_obj = _open_ca(ca_dir, passphrase_file)
    key = new_key()
    cert = ca_obj.issue_account(name, key.public_key(), days=days, replace=replace)
    target = out / name
    write_atomic(target / "client.key", key_pem(key), 0o600)
    write_atomic(target / "client.crt", cert_pem(cert), 0o644)
    write_atomic(target / "ca.crt", ca_obj.cert_pem(STATION_CA), 0o644)
    click.echo(f"{role} account {name}: {target}/client.crt, client.key (0600), ca.crt")
    listener = "--officer-port, 8885" if role == "officer" else "--station-port, 8884"
    click.echo(f"In its central.toml: [broker] tls_ca, tls_cert, tls_key and port ({listener}).")
    _refresh_broker(ca_obj)  # the account's client and role


@provision.command()
@_ca_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for roadside.conf, dynamic-security.json, CA files, crl.pem, server.crt/key.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    help="Name or IP the boxes reach the broker by (repeat for each).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8883,
    show_default=True,
    help="TLS port for the boxes.",
)
@click.option("--bind", default=None, help="Boxes' listener address (default: all).")
@click.option(
    "--station-port",
    type=click.IntRange(1, 65535),
    default=8884,
    show_default=True,
    help="TLS port for central and officers.",
)
@click.option(
    "--station-bind",
    default=None,
    help="Station listener address, e.g. the station LAN's (default: all).",
)
@click.option(
    "--officer-port",
    type=click.IntRange(1, 65535),
    default=8885,
    show_default=True,
    help="TLS port for officers.",
)
@click.option(
    "--officer-bind",
    default=None,
    help="Officer listener address, e.g. the station LAN's (default: all).",
)
@click.option(
    "--conf-dir",
    default=None,
    help="Where the folder will live on the broker host (default: /etc/mosquitto/roadside).",
)
@click.option("--renew", is_flag=True, help="Issue a new server key and certificate.")
@_passphrase_option
def broker(
    ca_dir: Path,
    out: Path,
    hosts: tuple[str, ...],
    port: int,
    bind: str | None,
    station_port: int,
    station_bind: str | None,
    officer_port: int,
    officer_bind: str | None,
    conf_dir: str | None,
    renew: bool,
    passphrase_file: Path | None,
) -> None:
    """Write (or refresh) the mosquitto TLS listeners, ACL, CA files, CRL and server cert."""
    for h in hosts:
        parse_broker(h if ":" not in h else f"[{h}]")
    if len({port, station_port, officer_port}) < 3:
        raise ProvisionError(
            "--port, --station-port and --officer-port must differ (one listener each)"
        )
    ca_obj = _open_ca(ca_dir, passphrase_file)
    files = write_broker_dir(
        ca_obj,
        out,
        list(hosts),
        port,
        bind,
        conf_dir,
        renew,
        station_port,
        station_bind,
        officer_port,
        officer_bind,
    )
    click.echo(
        f"broker files in {files.directory} (boxes on {port}, station on {station_port}, "
        f"officers on {officer_port}):"
    )
    for p in (
        files.conf,
        files.dynsec,
        files.device_ca,
        files.station_ca,
        files.officer_ca,
        files.crl,
        files.cert,
        files.key,
    ):
        click.echo(f"  {p.name}")
    click.echo("Copy them to the broker host (server.key owned by the mosquitto user, 0600),")
    click.echo("include roadside.conf from mosquitto.conf, then restart mosquitto.")
    _warn_station_ca_officers(ca_obj)


@provision.command("web")
@_ca_option
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    help="Name or IP the officers' browsers reach the console by (repeat for each).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for web.crt, web.key (0600) and ca.crt.",
)
@click.option("--days", type=click.IntRange(1, 3650), default=825, show_default=True)
@_passphrase_option
def web_cert(
    ca_dir: Path, hosts: tuple[str, ...], out: Path, days: int, passphrase_file: Path | None
) -> None:
    """The console's HTTPS certificate, signed by the station CA."""
    ca_obj = _open_ca(ca_dir, passphrase_file)
    key = new_key()
    cert = ca_obj.issue_server(list(hosts), key.public_key(), days=days, role="web")
    write_atomic(out / "web.key", key_pem(key), 0o600)
    write_atomic(out / "web.crt", cert_pem(cert), 0o644)
    write_atomic(out / "ca.crt", ca_obj.cert_pem(STATION_CA), 0o644)
    click.echo(f"console certificate for {', '.join(hosts)}: {out}/web.crt, web.key (0600)")
    click.echo("In central.toml:")
    click.echo(f'  [web]\n  tls_cert = "{out / "web.crt"}"\n  tls_key = "{out / "web.key"}"')
    click.echo("Install ca.crt as a trusted authority in the officers' browsers.")


@provision.command()
@click.argument("name")
@_ca_option
@click.option(
    "--broker-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker folder to update (default: the one `provision broker` wrote).",
)
@_passphrase_option
def revoke(name: str, ca_dir: Path, broker_dir: Path | None, passphrase_file: Path | None) -> None:
    """Take NAME's access away: revoke its certificates (CRL) and deny it in the ACL."""
    ca_obj = _open_ca(ca_dir, passphrase_file)
    marked = ca_obj.revoke(name)
    for c in marked:
        click.echo(f"revoked {name} serial {c.serial:x}")
    if not marked:
        click.echo(f"{name} was already revoked; CRL re-signed")
    _refresh_broker(ca_obj, broker_dir)


@provision.command("list")
@_ca_option
def list_cmd(ca_dir: Path) -> None:
    """Show every certificate the CA issued (no passphrase needed)."""
    reg = Registry.load(ca_dir / "issued.json")
    click.echo(f"{'name':<32} {'kind':<8} {'serial':<40} {'not after':<20} state")
    for c in reg.certs:
        state = f"revoked {c.revoked_at:%Y-%m-%d}" if c.revoked_at else "valid"
        click.echo(
            f"{c.name:<32} {c.kind:<8} {c.serial:<40x} {c.not_after:%Y-%m-%d %H:%M}     {state}"
        )


@provision.command("wheelhouse")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to fill with wheels.",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=wh.PROJECT_ROOT,
    show_default=True,
    help="The project to build.",
)
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    help="Target platform tag, e.g. manylinux2014_aarch64 (repeatable).",
)
@click.option("--python-version", default=None, help="Target Python, e.g. 3.11.")
@click.option("--extras", default="", help="Extras to include, e.g. 'pi'.")
@click.option("--dry-run", is_flag=True, help="Print the pip commands, run nothing.")
def wheelhouse_cmd(
    out: Path,
    project: Path,
    platforms: tuple[str, ...],
    python_version: str | None,
    extras: str,
    dry_run: bool,
) -> None:
    """Build the project's wheel and download its dependencies into OUT, for offline installs."""
    if dry_run:
        click.echo(" ".join(wh.wheel_command(project, out)))
        click.echo(
            " ".join(
                wh.download_command(
                    out / "roadside-<version>-py3-none-any.whl",
                    out,
                    platforms=platforms,
                    python_version=python_version,
                    extras=extras,
                )
            )
        )
        return
    wheel = wh.build_wheelhouse(out, project, platforms, python_version, extras)
    count = len(list(out.glob("*.whl")))
    click.echo(f"wheelhouse {out}: {wheel.name} and {count - 1} other wheels")


_release_passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ROADSIDE_RELEASE_PASSPHRASE_FILE",
    help=f"File holding the release key's passphrase (default: ${RELEASE_PASSPHRASE_ENV}, "
    "else a prompt).",
)


@provision.command("release-key")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_release_passphrase_option
def release_key_cmd(directory: Path, passphrase_file: Path | None) -> None:
    """Create the station's release key in DIRECTORY (not the CA folder): it signs software."""
    if (directory / rel.KEY_FILE).exists():
        raise ProvisionError(
            f"{directory / rel.KEY_FILE} exists already: one release key a station"
        )
    secret = _passphrase(passphrase_file, True, RELEASE_PASSPHRASE_ENV, "release key")
    public = rel.create_release_key(directory, secret)
    click.echo(f"release key in {directory}: {rel.KEY_FILE} (0600) signs releases;")
    click.echo(f"  {public.name} goes to every box as /etc/roadside/release.pub")
    click.echo(
        "Keep it apart from the CA folder, with a passphrase of its own; back it up offline."
    )


@provision.command("release")
@click.option(
    "--key",
    "key_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    envvar="ROADSIDE_RELEASE_KEY_DIR",
    required=True,
    help="The folder made by `provision release-key` (default: $ROADSIDE_RELEASE_KEY_DIR).",
)
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    required=True,
    help="Wheels from `provision wheelhouse` for the boxes' Python and architecture.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for roadside-<version>.release (the station's release folder).",
)
@click.option("--python", "python", default=None, help="The boxes' Python, e.g. 3.11.")
@click.option("--machine", default=None, help="The boxes' architecture, e.g. aarch64.")
@_release_passphrase_option
def release_cmd(
    key_dir: Path,
    wheelhouse: Path,
    out: Path,
    python: str | None,
    machine: str | None,
    passphrase_file: Path | None,
) -> None:
    """Pack a wheelhouse into a signed release for `roadside fleet update`."""
    rel.project_version(wheelhouse)  # a wrong folder fails before the prompt
    key = rel.open_release_key(
        key_dir, _passphrase(passphrase_file, False, RELEASE_PASSPHRASE_ENV, "release key")
    )
    path, manifest = rel.build_release(wheelhouse, key, out, python, machine)
    size = path.stat().st_size
    click.echo(
        f"release {manifest.version} for Python {manifest.python} on {manifest.machine}: "
        f"{path} ({len(manifest.files)} wheels, {size} bytes)"
    )
