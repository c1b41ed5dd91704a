"""install.sh into a temporary root prefix: the tree, the modes, idempotence, the venv.

With ROOT set the script never touches the real system (no useradd, chown or systemctl), so
these tests are safe on a developer machine, even as root.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from roadside.agent.update.slots import Slots
from roadside.provisioning.agent_toml import Broker
from roadside.provisioning.ca import ProjectCA
from roadside.provisioning.cloudinit import install_script, write_card
from roadside.provisioning.device import DeviceRequest, make_bundle, read_bundle

INSTALL = install_script()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("install")
    ca = ProjectCA.create(base / "ca", b"correct horse battery staple")
    req = DeviceRequest("junction-07", "SS42 km 7", (46.49, 11.35), Broker("broker.lan"))
    return make_bundle(ca, req, base / "out")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """A stand-in for systemd/roadside-agent.service (another part of the tree owns it)."""
    p = tmp_path / "roadside-agent.service"
    p.write_text("[Unit]\nDescription=Roadside agent\n[Service]\nExecStart=/bin/true\n")
    return p


def run_install(
    root: Path, *args: str, skip_venv: bool = True, check: bool = True
) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROOT": str(root), "SKIP_VENV": "1" if skip_venv else "0"}
    proc = subprocess.run(
        ["bash", str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def listing(root: Path) -> list[tuple[str, str, str]]:
    """Every path under ``root`` with its mode and content hash (or link target)."""
    out = []
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = "-> " + os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            what = "dir"
        out.append((str(p.relative_to(root)), stat.filemode(st.st_mode), what))
    return out


@pytest.mark.slow
def test_install_twice_into_a_prefix_gives_the_same_tree(
    bundle: Path, unit: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    real = (Path("/etc/roadside").exists(), _has_user("roadside"))
    first = run_install(root, "--bundle", str(bundle), "--unit", str(unit))
    after_first = listing(root)
    second = run_install(root, "--bundle", str(bundle), "--unit", str(unit))
    assert listing(root) == after_first
    assert "installed" not in second.stdout  # nothing rewritten the second time

    files = {path: mode for path, mode, _ in after_first}
    assert files["etc/roadside"] == "drwxrwx---"  # the agent writes config changes there
    assert files["etc/roadside/tls"] == "drwxr-x---"
    assert files["var/lib/roadside"] == "drwxr-x---"
    assert files["opt/roadside"] == "drwxr-xr-x"
    assert files["opt/roadside/releases"] == "drwxr-xr-x"
    assert files["etc/roadside/tls/device.key"] == "-rw-------"
    assert files["etc/roadside/tls/device.crt"] == "-rw-r--r--"
    assert files["etc/roadside/agent.toml"] == "-rw-r--r--"
    assert files["etc/systemd/system/roadside-agent.service"] == "-rw-r--r--"
    b = read_bundle(bundle)
    for name, dest in (
        ("agent.toml", "etc/roadside/agent.toml"),
        ("tls/device.key", "etc/roadside/tls/device.key"),
        ("tls/ca.crt", "etc/roadside/tls/ca.crt"),
    ):
        assert (root / dest).read_bytes() == b.files[name]
    # Outside the prefix it only says what it would do.
    for line in (
        "would run: useradd --system",
        "would run: systemctl enable --now roadside-agent.service",
        "would run: hostnamectl set-hostname junction-07",
    ):
        assert line in first.stdout
    assert (Path("/etc/roadside").exists(), _has_user("roadside")) == real


def _has_user(name: str) -> bool:
    return subprocess.run(["id", name], capture_output=True).returncode == 0


def _tampered(bundle: Path, out: Path) -> Path:
    """Same archive, agent.toml pointing elsewhere, SHA256SUMS left as it was."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            f = src.extractfile(member) if member.isfile() else None
            data = f.read() if f else None
            if member.name == "agent.toml" and data is not None:
                data = data.replace(b"broker.lan", b"evil.example")
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def _corrupt(bundle: Path, out: Path) -> Path:
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_corrupt, "cannot unpack"),
        (_tampered, "is damaged (SHA256SUMS mismatch)"),
    ],
)
def test_install_refuses_a_damaged_bundle(
    bundle: Path, tmp_path: Path, spoil, message: str
) -> None:
    bad = spoil(bundle, tmp_path / "bad.tar.gz")
    root = tmp_path / "root"
    proc = run_install(root, "--bundle", str(bad), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not root.exists() or list(root.rglob("*")) == []  # checked before any change


def test_first_boot_card_installs_and_removes_the_bundle(bundle: Path, tmp_path: Path) -> None:
    """What cloud-init runs on first boot, with the card's own copy of install.sh."""
    card = write_card(tmp_path / "card", "junction-07", "abcd", bundle)
    on_card = card / "roadside" / bundle.name
    env = {**os.environ, "ROOT": str(tmp_path / "root"), "SKIP_VENV": "1"}
    proc = subprocess.run(
        [
            "bash",
            str(card / "roadside" / "install.sh"),
            "--bundle",
            str(on_card),
            "--remove-bundle",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert not on_card.exists()  # the private key does not stay on the FAT partition
    assert bundle.exists()
    assert (tmp_path / "root/etc/roadside/tls/device.key").is_file()


def _fake_wheel(wheelhouse: Path) -> None:
    """A tiny 'roadside' wheel: the real one needs the whole dependency tree, and what is
    tested here is the offline venv step, not our packaging."""
    wheelhouse.mkdir()
    files = {
        "roadside/__init__.py": "def main():\n    print('roadside from the wheelhouse')\n",
        "roadside-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: roadside\n"
        "Version: 0.0.1\n",
        "roadside-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        "roadside-0.0.1.dist-info/entry_points.txt": "[console_scripts]\n"
        "roadside = roadside:main\n",
    }
    record = "".join(f"{n},,\n" for n in files) + "roadside-0.0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheelhouse / "roadside-0.0.1-py3-none-any.whl", "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("roadside-0.0.1.dist-info/RECORD", record)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("python3"), reason="needs a system python3")
def test_install_builds_the_venv_offline_from_a_wheelhouse(bundle: Path, tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    _fake_wheel(wheelhouse)
    root = tmp_path / "root"
    run_install(root, "--bundle", str(bundle), "--wheelhouse", str(wheelhouse), skip_venv=False)
    venv = root / "opt/roadside/current"
    proc = subprocess.run([str(venv / "bin/roadside")], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "roadside from the wheelhouse"
    assert os.readlink(root / "usr/local/bin/roadside") == "/opt/roadside/current/bin/roadside"
    # The first release slot, complete, current and stable at once (agent/update/slots.py).
    slots = Slots(root)
    assert slots.versions() == ["0.0.1"] and slots.current() == slots.stable() == "0.0.1"
    before = listing(root)
    run_install(root, "--bundle", str(bundle), "--wheelhouse", str(wheelhouse), skip_venv=False)
    assert listing(root) == before
