#!/usr/bin/env bash
# Install (or re-install) the Roadside agent on a box, offline, from a device bundle and a
# wheelhouse. Safe to run again: a second run with the same inputs changes nothing.
#
#   sudo provisioning/install.sh --bundle junction-07.bundle.tar.gz --wheelhouse ./wheelhouse
#
# Options:
#   --bundle FILE      device bundle from `roadside provision device` (key, cert, agent.toml)
#   --wheelhouse DIR   wheels from `roadside provision wheelhouse` (pip install --no-index),
#                      installed as the release slot /opt/roadside/releases/<version>
#   --release-key FILE the station's release.pub (`roadside provision release-key`): the box
#                      installs only releases signed by it
#   --unit FILE        systemd unit to install (default: roadside-agent.service next to this
#                      script, or ../systemd/roadside-agent.service)
#   --no-venv          skip the virtual environment (also SKIP_VENV=1)
#   --remove-bundle    delete the bundle once installed (first boot: it sits on a FAT card)
#
# Environment:
#   ROOT=/some/dir     install into that prefix instead of /; nothing outside it is touched:
#                      no useradd, chown or systemctl, only "would run: ..." lines.
#   PYTHON=python3     interpreter for the venv.
set -euo pipefail
umask 022

ROOT="${ROOT:-}"
ROOT="${ROOT%/}"
PYTHON="${PYTHON:-python3}"
SKIP_VENV="${SKIP_VENV:-0}"
BUNDLE=""
WHEELHOUSE=""
UNIT=""
RELEASE_KEY=""
REMOVE_BUNDLE=0
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK=""
trap 'if [ -n "$WORK" ]; then rm -rf "$WORK"; fi' EXIT

SERVICE_USER=roadside
OPT_DIR=/opt/roadside
RELEASES_DIR=$OPT_DIR/releases  # a venv per release; current and stable link to one each
SLOT_MARK=.roadside-slot.json   # written last: the slot is complete (agent/update/slots.py)
ETC_DIR=/etc/roadside
TLS_DIR=$ETC_DIR/tls
DATA_DIR=/var/lib/roadside
UNIT_DIR=/etc/systemd/system
UNIT_NAME=roadside-agent.service

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --bundle) BUNDLE="${2:?--bundle needs a file}"; shift 2 ;;
        --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a folder}"; shift 2 ;;
        --unit) UNIT="${2:?--unit needs a file}"; shift 2 ;;
        --release-key) RELEASE_KEY="${2:?--release-key needs a file}"; shift 2 ;;
        --no-venv) SKIP_VENV=1; shift ;;
        --remove-bundle) REMOVE_BUNDLE=1; shift ;;
        -h|--help) usage 0 ;;
        *) printf 'install: unknown option %s\n' "$1" >&2; usage 2 ;;
    esac
done

# Runs a command that changes the system outside the tree; with ROOT set, only says so.
system() {
    if [ -n "$ROOT" ]; then say "would run: $*"; else "$@"; fi
}

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or set ROOT=/some/prefix to install into a folder)"
fi
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    say "installing into prefix $ROOT"
fi
[ -n "$BUNDLE" ] || [ -f "$ROOT$ETC_DIR/agent.toml" ] \
    || die "no --bundle given and $ROOT$ETC_DIR/agent.toml does not exist yet"

# ------------------------------------------------------------------ service user
ensure_user() {
    local groups=() g
    for g in video gpio; do
        if getent group "$g" >/dev/null 2>&1; then groups+=("$g"); fi
    done
    if [ -n "$ROOT" ] || ! id "$SERVICE_USER" >/dev/null 2>&1; then
        system useradd --system --home-dir "$DATA_DIR" --no-create-home \
            --shell /usr/sbin/nologin --user-group "$SERVICE_USER"
    fi
    if [ ${#groups[@]} -gt 0 ]; then
        system usermod --append --groups "$(IFS=,; echo "${groups[*]}")" "$SERVICE_USER"
    fi
}

# ------------------------------------------------------------------ folders
# dir MODE OWNER:GROUP PATH
dir() {
    install -d -m "$1" "$ROOT$3"
    chmod "$1" "$ROOT$3"
    if [ -z "$ROOT" ]; then chown "$2" "$3"; fi
}

# put SRC MODE OWNER:GROUP DEST: copy only when the content differs, always fix the mode.
put() {
    local src="$1" mode="$2" owner="$3" dest="$ROOT$4"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        chmod "$mode" "$dest"
    else
        install -m "$mode" "$src" "$dest"
        say "installed $4 ($mode)"
    fi
    if [ -z "$ROOT" ]; then chown "$owner" "$dest"; fi
}

# ------------------------------------------------------------------ bundle
# Unpacked and checked first, before anything on the system changes.
DEVICE=""
unpack_bundle() {
    [ -f "$BUNDLE" ] || die "bundle not found: $BUNDLE"
    WORK="$(mktemp -d)"
    # --no-same-owner/permissions: the modes we want are set below, whatever the archive says.
    tar -xzf "$BUNDLE" -C "$WORK" --no-same-owner --no-same-permissions \
        || die "cannot unpack $BUNDLE"
    [ -f "$WORK/SHA256SUMS" ] || die "$BUNDLE has no SHA256SUMS: not a roadside bundle"
    (cd "$WORK" && sha256sum --quiet --strict -c SHA256SUMS) \
        || die "$BUNDLE is damaged (SHA256SUMS mismatch): copy it again"
    local f
    for f in agent.toml manifest.json tls/ca.crt tls/device.crt tls/device.key; do
        [ -f "$WORK/$f" ] || die "$BUNDLE has no $f"
    done
    DEVICE="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["device"])' \
        "$WORK/manifest.json" 2>/dev/null)" || DEVICE=""
    [[ "$DEVICE" =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] \
        || die "$BUNDLE: no valid device name in manifest.json"
    say "bundle for device $DEVICE checked"
}

apply_bundle() {
    put "$WORK/agent.toml" 0644 root:root "$ETC_DIR/agent.toml"
    put "$WORK/manifest.json" 0644 root:root "$ETC_DIR/bundle.json"
    put "$WORK/tls/ca.crt" 0644 root:root "$TLS_DIR/ca.crt"
    put "$WORK/tls/device.crt" 0644 root:root "$TLS_DIR/device.crt"
    # The agent runs as $SERVICE_USER and reads its key; nobody else may.
    put "$WORK/tls/device.key" 0600 "$SERVICE_USER:$SERVICE_USER" "$TLS_DIR/device.key"
    system hostnamectl set-hostname "$DEVICE" || say "warning: could not set the hostname"
}

# ------------------------------------------------------------------ release slot
# link NAME VERSION: /opt/roadside/NAME -> releases/VERSION, replaced in one rename.
link() {
    ln -sfn "releases/$2" "$ROOT$OPT_DIR/.$1.link-new"
    mv -Tf "$ROOT$OPT_DIR/.$1.link-new" "$ROOT$OPT_DIR/$1"
}

ensure_venv() {
    if [ "$SKIP_VENV" = 1 ]; then say "skipping the virtual environment"; return; fi
    if [ -n "$WHEELHOUSE" ]; then
        [ -d "$WHEELHOUSE" ] || die "wheelhouse not found: $WHEELHOUSE"
        local wheels version slot
        wheels=("$WHEELHOUSE"/roadside-*-py3-none-any.whl)
        [ -f "${wheels[0]}" ] && [ ${#wheels[@]} -eq 1 ] \
            || die "$WHEELHOUSE must hold exactly one roadside wheel"
        version="$(basename "${wheels[0]}")"
        version="${version#roadside-}"
        version="${version%-py3-none-any.whl}"
        slot="$ROOT$RELEASES_DIR/$version"
        if [ ! -f "$slot/$SLOT_MARK" ]; then
            rm -rf "$slot"
            # System site packages: picamera2 and libcamera come from apt on a Pi, not pip.
            "$PYTHON" -m venv --system-site-packages "$slot" || die "cannot create $slot"
            "$slot/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
                --find-links "$WHEELHOUSE" "roadside==$version" \
                || die "pip could not install roadside $version from $WHEELHOUSE"
            sync
            printf '{"version": "%s", "installed": %s}\n' "$version" "$(date +%s)" \
                >"$slot/$SLOT_MARK"
            say "release $version installed in $RELEASES_DIR/$version"
        fi
        if [ -z "$ROOT" ]; then chown -R "$SERVICE_USER:$SERVICE_USER" "$slot"; fi
        link current "$version"
        link stable "$version"
    elif [ ! -x "$ROOT$OPT_DIR/current/bin/roadside" ]; then
        die "no release installed under $RELEASES_DIR and no --wheelhouse was given"
    fi
    install -d -m 0755 "$ROOT/usr/local/bin"
    ln -sfn "$OPT_DIR/current/bin/roadside" "$ROOT/usr/local/bin/roadside"
}

# ------------------------------------------------------------------ systemd
ensure_unit() {
    local unit="$UNIT" c
    if [ -z "$unit" ]; then
        for c in "$SCRIPT_DIR/$UNIT_NAME" "$SCRIPT_DIR/../systemd/$UNIT_NAME"; do
            if [ -f "$c" ]; then unit="$c"; break; fi
        done
    fi
    if [ -z "$unit" ] || [ ! -f "$unit" ]; then
        say "warning: $UNIT_NAME not found; the agent is installed but not enabled"
        return
    fi
    install -d -m 0755 "$ROOT$UNIT_DIR"
    put "$unit" 0644 root:root "$UNIT_DIR/$UNIT_NAME"
    system systemctl daemon-reload
    system systemctl enable --now "$UNIT_NAME"
}

if [ -n "$BUNDLE" ]; then unpack_bundle; fi
ensure_user
# The agent installs the releases it is sent (signed ones only) itself.
dir 0755 "$SERVICE_USER:$SERVICE_USER" "$OPT_DIR"
dir 0755 "$SERVICE_USER:$SERVICE_USER" "$RELEASES_DIR"
# The agent writes config changes from the station beside agent.toml (write, rename).
dir 0770 "root:$SERVICE_USER" "$ETC_DIR"
dir 0750 "root:$SERVICE_USER" "$TLS_DIR"
dir 0750 "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR"
if [ -n "$BUNDLE" ]; then apply_bundle; fi
if [ -n "$RELEASE_KEY" ]; then
    [ -f "$RELEASE_KEY" ] || die "release key not found: $RELEASE_KEY"
    put "$RELEASE_KEY" 0644 root:root "$ETC_DIR/release.pub"
fi
ensure_venv
ensure_unit
if [ "$REMOVE_BUNDLE" = 1 ] && [ -n "$BUNDLE" ]; then
    rm -f -- "$BUNDLE"
    say "removed $BUNDLE (it held the private key)"
fi
say "done"
