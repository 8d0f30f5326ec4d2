#!/usr/bin/env bash
# Installs the node of one locker bank on a fresh Raspberry Pi OS or Debian 12 machine, as root:
# Debian packages, users, a venv with the project under /opt/locker-node, the enrollment with
# central, the systemd units, the udev rules and the journald limits. Running it again is safe:
# what is in place already is kept (an enrolled node is never enrolled again).
#
#   install.sh --central https://central.example.net --bank NYC-0042 --token TOKEN \
#       [--source WHEEL|SDIST|CHECKOUT | --version X] [--kiosk | --no-kiosk] [--ca-bundle PEM]
#       [--config-only] [--packages-only]
#
# The token comes from `locker-central bank enroll <bank>` and works ONCE: a failed enrollment
# after central accepted it needs a new one. --config-only (alias --skip-enroll) does not talk
# to central: it writes a standalone config to enroll later (for images and offline tests).
# --packages-only installs the Debian packages and stops.
set -eu
set -o pipefail

# The Debian packages, one line each: tests/deploy keys its cached Debian root by these lines.
NODE_PACKAGES="python3 python3-venv ca-certificates systemd udev"
KIOSK_PACKAGES="cage chromium dbus libpam-systemd"

PREFIX=/opt/locker-node
VENV=$PREFIX/venv
CONFIG_DIR=/etc/locker-node
CONFIG=$CONFIG_DIR/node.toml
CA_FILE=$CONFIG_DIR/central-ca.pem
DATA_DIR=/var/lib/locker-node
KEY_FILE=$DATA_DIR/node-identity.pem
NODE_USER=locker-node
KIOSK_USER=locker-kiosk
KIOSK_HOME=/var/lib/locker-kiosk
UNIT_DIR=/etc/systemd/system
HERE=$(cd "$(dirname "$0")" && pwd)

say() { printf 'install.sh: %s\n' "$*"; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0"
    exit "${1:-0}"
}

CENTRAL="" BANK="" TOKEN="" SOURCE="" VERSION="" CA_BUNDLE=""
KIOSK=1 ENROLL=1 PACKAGES_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --central) CENTRAL=${2:?--central needs a URL}; shift 2 ;;
        --bank) BANK=${2:?--bank needs a bank id}; shift 2 ;;
        --token) TOKEN=${2:?--token needs the enrollment token}; shift 2 ;;
        --source) SOURCE=${2:?--source needs a path}; shift 2 ;;
        --version) VERSION=${2:?--version needs a version}; shift 2 ;;
        --ca-bundle) CA_BUNDLE=${2:?--ca-bundle needs a PEM file}; shift 2 ;;
        --kiosk) KIOSK=1; shift ;;
        --no-kiosk) KIOSK=0; shift ;;
        --config-only | --skip-enroll) ENROLL=0; shift ;;
        --packages-only) PACKAGES_ONLY=1; shift ;;
        -h | --help) usage 0 ;;
        *) printf 'install.sh: unknown argument: %s\n\n' "$1" >&2; usage 2 ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run me as root (sudo $0 ...)"
command -v apt-get >/dev/null || die "apt-get not found: this installs on Debian or Raspberry Pi OS"

install_packages() {
    local wanted status missing=""
    wanted=$NODE_PACKAGES
    [ "$KIOSK" -eq 1 ] && wanted="$wanted $KIOSK_PACKAGES"
    for package in $wanted; do
        status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || missing="$missing $package"
    done
    if [ -z "$missing" ]; then
        say "Debian packages: all there ($wanted)"
        return
    fi
    say "Debian packages: installing$missing"
    apt-get update -q
    # shellcheck disable=SC2086 # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

install_packages
if [ "$PACKAGES_ONLY" -eq 1 ]; then
    say "--packages-only: done"
    exit 0
fi

# Arguments, checked before anything else changes.
case "$CENTRAL" in
    https://* | http://*) ;;
    *) die "--central must be central's https:// URL" ;;
esac
case "$CENTRAL$BANK" in
    *'"'* | *\\* | *' '*) die "--central and --bank may not hold quotes, backslashes or spaces" ;;
esac
[ -n "$BANK" ] || die "--bank is required"
[ "$ENROLL" -eq 0 ] || [ -n "$TOKEN" ] || [ -f "$KEY_FILE" ] ||
    die "--token is required to enroll (or --config-only to enroll later)"
[ -z "$CA_BUNDLE" ] || [ -r "$CA_BUNDLE" ] || die "--ca-bundle $CA_BUNDLE: not readable"
if [ -n "$SOURCE" ] && [ -n "$VERSION" ]; then
    die "--source and --version: one or the other"
fi
if [ -z "$SOURCE" ] && [ -z "$VERSION" ]; then
    # Run from a checkout: install that checkout.
    [ -f "$HERE/../../pyproject.toml" ] || die "give --source PATH or --version X"
    SOURCE=$(cd "$HERE/../.." && pwd)
fi
[ -z "$SOURCE" ] || [ -e "$SOURCE" ] || die "--source $SOURCE: no such file or directory"

ensure_group() {
    if getent group "$1" >/dev/null; then
        return
    fi
    groupadd --system "$1"
    say "group $1: created"
}

ensure_user() { # name home groups
    if ! getent passwd "$1" >/dev/null; then
        useradd --system --user-group --home-dir "$2" --no-create-home \
            --shell /usr/sbin/nologin --comment "locker bank ($1)" "$1"
        say "user $1: created"
    fi
    usermod --append --groups "$3" "$1"
    say "user $1: in groups $(id -Gn "$1" | tr ' ' ',')"
}

# Plain Debian has no gpio group (Raspberry Pi OS does); render and input may be missing from
# a minimal system.
for group in dialout gpio; do ensure_group "$group"; done
ensure_user "$NODE_USER" "$DATA_DIR" dialout,gpio
if [ "$KIOSK" -eq 1 ]; then
    for group in video render input; do ensure_group "$group"; done
    ensure_user "$KIOSK_USER" "$KIOSK_HOME" video,render,input
    install -d -m 0700 -o "$KIOSK_USER" -g "$KIOSK_USER" "$KIOSK_HOME"
fi

install -d -m 0755 "$PREFIX"
install -d -m 0750 -o root -g "$NODE_USER" "$CONFIG_DIR"
install -d -m 0750 -o "$NODE_USER" -g "$NODE_USER" "$DATA_DIR"

# The project, in a venv of its own.
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    say "venv: created in $VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
if [ -n "$SOURCE" ]; then
    say "locker-network: installing $SOURCE and its dependencies"
    "${pip[@]}" install --quiet "$SOURCE"
    # The same version number may be a newer build: put exactly this one in place.
    "${pip[@]}" install --quiet --force-reinstall --no-deps "$SOURCE"
else
    say "locker-network: installing version $VERSION and its dependencies"
    "${pip[@]}" install --quiet "locker-network==$VERSION"
fi
say "locker-network: $("${pip[@]}" show locker-network | sed -n 's/^Version: //p') in $VENV"
NODE_BIN=$VENV/bin/locker-node

if [ -n "$CA_BUNDLE" ]; then
    install -m 0644 "$CA_BUNDLE" "$CA_FILE"
    say "central's CA: $CA_FILE"
fi

provision_takes() { # option name as a Python parameter name, e.g. ca_bundle
    "$VENV/bin/python" -c 'import inspect, sys, locker_node.cli as cli
sys.exit(sys.argv[1] not in inspect.signature(cli.provision).parameters)' "$1"
}

enroll() {
    local options=()
    if [ -n "$CA_BUNDLE" ] && provision_takes ca_bundle; then
        options+=(--ca-bundle "$CA_FILE")
    fi
    say "enrolling with $CENTRAL as bank $BANK (a token works once)"
    # As root: /etc/locker-node is root's. The node's files are handed over right after.
    # SSL_CERT_FILE: OpenSSL's default trust, for a provision without --ca-bundle.
    env ${CA_BUNDLE:+"SSL_CERT_FILE=$CA_FILE"} "$NODE_BIN" provision --central "$CENTRAL" \
        --bank "$BANK" --token "$TOKEN" --config "$CONFIG" --data-dir "$DATA_DIR" "${options[@]}" ||
        die "enrollment failed (above). An accepted token is spent: get a new one to retry"
}

write_standalone_config() {
    cat >"$CONFIG" <<EOF
# Written by install.sh --config-only: NOT enrolled with central yet, so the node runs on its
# own. To enroll (the token from \`locker-central bank enroll $BANK\`, once):
#   $NODE_BIN provision --central $CENTRAL --bank $BANK \\
#       --token TOKEN --config $CONFIG --data-dir $DATA_DIR
# or run install.sh again without --config-only. Then wire [[boards]] and [[compartments]].
bank_id = "$BANK"
central_url = "$CENTRAL"
data_dir = "$DATA_DIR"

[[boards]]
name = "main"
protocol = "simulated"
locks = 1

# Fleet health, reported with each heartbeat (all optional). A UPS's status lines on GPIO
# inputs give power_lost and battery_low alerts; check your UPS's manual for its pins and
# whether a line is high or low when asserted.
# [health]
# disk_path = "/var/lib/locker-node"          # default: data_dir
# cpu_temperature_file = "/sys/class/thermal/thermal_zone0/temp"
# [health.ups]
# on_battery_pin = "GPIO6"                    # asserted while the UPS runs on its battery
# battery_low_pin = "GPIO5"                   # optional
# active_high = true
# pull = "down"                               # "up", "down" or "none" (a line the UPS drives both ways)
# [health.enclosure]
# sensor_file = "/sys/bus/w1/devices/28-000005e2fdc3/temperature"   # a DS18B20 (1-Wire)
EOF
    say "config: $CONFIG written, standalone (not enrolled)"
}

if [ -f "$KEY_FILE" ]; then
    say "enrollment: $KEY_FILE exists, already enrolled; $CONFIG kept"
elif [ "$ENROLL" -eq 1 ]; then
    enroll
elif [ -f "$CONFIG" ]; then
    say "config: $CONFIG exists, kept (--config-only)"
else
    write_standalone_config
fi
# The node's own file, unreadable to others (it names central and the bank). The service still
# cannot change it: ProtectSystem=strict keeps /etc read-only for it.
chown "$NODE_USER:$NODE_USER" "$CONFIG"
chmod 0640 "$CONFIG"
chown -R "$NODE_USER:$NODE_USER" "$DATA_DIR"

# A CA the config does not name (a provision without --ca-bundle) reaches the node through
# OpenSSL's SSL_CERT_FILE.
DROP_IN=$UNIT_DIR/locker-node.service.d/central-ca.conf
if [ -n "$CA_BUNDLE" ] && ! grep -q '^ca_bundle' "$CONFIG"; then
    install -d -m 0755 "$(dirname "$DROP_IN")"
    printf '[Service]\nEnvironment=SSL_CERT_FILE=%s\n' "$CA_FILE" >"$DROP_IN"
    say "systemd: $DROP_IN trusts $CA_FILE for central"
fi

# The config must load, read as the node will read it.
runuser -u "$NODE_USER" -- "$VENV/bin/python" -c \
    'import sys; from locker_node.config import load_config; load_config(sys.argv[1])' "$CONFIG" ||
    die "$CONFIG does not load; fix it and run me again"
KIOSK_PORT=$("$VENV/bin/python" -c \
    'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("kiosk", {}).get("port", 8080))' \
    "$CONFIG")

systemd_running() { [ -d /run/systemd/system ]; }

put() { # source destination mode
    install -D -m "$3" "$1" "$2"
    say "installed $2"
}

UNITS=locker-node.service
put "$HERE/locker-node.service" "$UNIT_DIR/locker-node.service" 0644
if [ "$KIOSK" -eq 1 ]; then
    sed "s|http://127.0.0.1:8080/|http://127.0.0.1:$KIOSK_PORT/|" "$HERE/locker-kiosk.service" \
        >"$UNIT_DIR/locker-kiosk.service"
    chmod 0644 "$UNIT_DIR/locker-kiosk.service"
    say "installed $UNIT_DIR/locker-kiosk.service (kiosk at http://127.0.0.1:$KIOSK_PORT/)"
    UNITS="$UNITS locker-kiosk.service"
elif [ -f "$UNIT_DIR/locker-kiosk.service" ]; then
    if systemd_running; then
        systemctl disable --now locker-kiosk.service || true
    else
        systemctl --root=/ disable locker-kiosk.service || true
    fi
    rm -f "$UNIT_DIR/locker-kiosk.service"
    say "removed $UNIT_DIR/locker-kiosk.service (--no-kiosk)"
fi
put "$HERE/99-locker-rs485.rules" /etc/udev/rules.d/99-locker-rs485.rules 0644
put "$HERE/99-locker-gpio.rules" /etc/udev/rules.d/99-locker-gpio.rules 0644
put "$HERE/journald-locker.conf" /etc/systemd/journald.conf.d/locker.conf 0644

if systemd_running; then
    systemctl daemon-reload
    # shellcheck disable=SC2086 # a list of unit names
    systemctl enable $UNITS
    [ "$KIOSK" -eq 0 ] || systemctl disable getty@tty1.service
    if udevadm control --reload; then
        udevadm trigger --action=change --subsystem-match=tty --subsystem-match=gpio
    else
        say "udev: not running; the rules apply from the next boot"
    fi
    systemctl restart systemd-journald
    # An upgrade: running units pick up the new code and units now; stopped ones stay stopped.
    # shellcheck disable=SC2086
    systemctl try-restart $UNITS
    say "systemd: $UNITS enabled; udev rules and journald limits in force"
else
    # No running systemd (a chroot, an image being built): enable offline, start nothing.
    # shellcheck disable=SC2086
    systemctl --root=/ enable $UNITS
    [ "$KIOSK" -eq 0 ] || systemctl --root=/ disable getty@tty1.service
    say "systemd is not running here: $UNITS enabled for the next boot, nothing started"
fi

say "done. Next: wire [[boards]] and each compartment's board/lock in $CONFIG"
say "(port = \"/dev/locker-rs485\" for a USB RS485 adapter), then: systemctl start $UNITS"
