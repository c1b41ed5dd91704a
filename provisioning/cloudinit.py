"""First boot from the SD card: cloud-init ``user-data`` and ``meta-data`` for the boot partition.

The technician copies the folder written here onto the card's boot (FAT) partition, next to
the files the image already has. On first boot cloud-init's NoCloud datasource finds
``user-data``/``meta-data`` there and runs ``install.sh`` with the bundle and the wheelhouse
from the same card: no network needed. The install deletes the bundle afterwards, because a
FAT partition has no permissions and the bundle holds the box's private key.

Layout written (``/boot/firmware`` on Raspberry Pi OS Bookworm and Ubuntu)::

    user-data  meta-data
    roadside/install.sh
    roadside/<device>.bundle.tar.gz
    roadside/roadside-agent.service   (when the project has it)
    roadside/wheelhouse/              (copied with --wheelhouse, else copy it yourself)
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from roadside.errors import ProvisionError

from .files import write_atomic
from .identity import check_device_id

BOOT_MOUNT = "/boot/firmware"
CARD_DIR = "roadside"


def install_script() -> Path:
    """install.sh as shipped in the package (it sits beside this module)."""
    return Path(str(resources.files("roadside.provisioning") / "install.sh"))


def unit_file() -> Path | None:
    """systemd/roadside-agent.service from the source tree, when there is one."""
    here = Path(__file__).resolve().parent.parent / "systemd" / "roadside-agent.service"
    return here if here.is_file() else None


def _q(s: str) -> str:
    """A YAML scalar that needs no thinking: JSON strings are valid YAML double-quoted ones."""
    return json.dumps(s)


def render_user_data(device: str, bundle_name: str, boot_mount: str = BOOT_MOUNT) -> str:
    """The ``#cloud-config`` document: hostname, then install.sh from the card, once."""
    check_device_id(device)
    base = f"{boot_mount.rstrip('/')}/{CARD_DIR}"
    cmd = [
        "bash",
        f"{base}/install.sh",
        "--bundle",
        f"{base}/{bundle_name}",
        "--wheelhouse",
        f"{base}/wheelhouse",
        "--remove-bundle",
    ]
    return "\n".join(
        [
            "#cloud-config",
            f"# Roadside box {device}: written by `roadside provision device --cloud-init`.",
            "# Runs once (per instance-id in meta-data); output in /var/log/cloud-init-output.log.",
            f"hostname: {_q(device)}",
            "preserve_hostname: false",
            "package_update: false",
            "package_upgrade: false",
            "runcmd:",
            f"  - [{', '.join(_q(c) for c in cmd)}]",
            "",
        ]
    )


def render_meta_data(device: str, serial_hex: str) -> str:
    """instance-id changes with the certificate, so a re-provisioned card installs again."""
    check_device_id(device)
    return "\n".join(
        [
            f"instance-id: {_q(f'roadside-{device}-{serial_hex[:16]}')}",
            f"local-hostname: {_q(device)}",
            "",
        ]
    )


def write_card(
    out: Path,
    device: str,
    serial_hex: str,
    bundle: Path,
    wheelhouse: Path | None = None,
    boot_mount: str = BOOT_MOUNT,
) -> Path:
    """Fill ``out`` with what goes on the boot partition; returns ``out``."""
    out = Path(out)
    card = out / CARD_DIR
    script = install_script()
    if not script.is_file():
        raise ProvisionError(f"install.sh is missing from the package ({script})")
    try:
        card.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(script, card / "install.sh")
        (card / "install.sh").chmod(0o755)
        shutil.copyfile(bundle, card / bundle.name)
        (card / bundle.name).chmod(0o600)
        unit = unit_file()
        if unit:
            shutil.copyfile(unit, card / unit.name)
        if wheelhouse:
            shutil.copytree(wheelhouse, card / "wheelhouse", dirs_exist_ok=True)
    except OSError as exc:
        raise ProvisionError(f"cannot fill {out}: {exc}") from None
    write_atomic(out / "user-data", render_user_data(device, bundle.name, boot_mount), 0o644)
    write_atomic(out / "meta-data", render_meta_data(device, serial_hex), 0o644)
    return out
