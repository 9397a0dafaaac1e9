#!/usr/bin/env bash
# Installs, upgrades and purges the Debian package as a box would, without
# touching this machine: everything runs in private mount, PID and network
# namespaces where /usr, /etc and /var are overlays on a tmpfs and /run and
# /tmp are empty tmpfs (no systemd of this machine is reachable), all gone at
# the end (needs root). Used by the tests (crates/orion/tests/package.rs).
#
# usage: packaging/test-install.sh DEB UPGRADE_DEB
#   DEB          the package to install (the service must run the demo)
#   UPGRADE_DEB  a later version of it (the upgrade must keep config and state),
#                e.g. from scripts/package.sh --version 0.1.1 --fast
# Prints `ok: ...` per check, `FAIL: ...` and exits 1 at the first that fails.
set -euo pipefail

[ $# = 2 ] || { echo "usage: $0 DEB UPGRADE_DEB" >&2; exit 2; }
# The mount namespace this script started in: inside, it must be another.
HOST_NS=$(readlink /proc/self/ns/mnt)
if [ -z "${ORION_HOST_MOUNT_NS:-}" ]; then
    DEB=$(realpath "$1") UPGRADE=$(realpath "$2")
    exec env ORION_HOST_MOUNT_NS="$HOST_NS" unshare --mount --net --pid --fork --kill-child \
        "$0" "$DEB" "$UPGRADE"
fi
fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok ($SECONDS s): $*"; }
[ "$HOST_NS" != "$ORION_HOST_MOUNT_NS" ] || fail "not in a mount namespace of its own: nothing done"
mount --make-rprivate /
mount -t proc proc /proc
# No systemd here (an empty /run), and service starts refused as in a chroot.
mount -t tmpfs tmpfs /run
layers=/run/layers
mkdir "$layers"
# The packages (they may be under /tmp, which goes next).
cp "$1" "$layers/orion.deb"
cp "$2" "$layers/orion-upgrade.deb"
DEB=$layers/orion.deb
UPGRADE=$layers/orion-upgrade.deb
mount -t tmpfs tmpfs /tmp
for dir in usr etc var; do
    mkdir -p "$layers/$dir.upper" "$layers/$dir.work"
    mount -t overlay overlay -o "lowerdir=/$dir,upperdir=$layers/$dir.upper,workdir=$layers/$dir.work" "/$dir"
done
ip link set lo up
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "$@"
}

# The service as systemd would run it (this namespace has no systemd): the
# unit's ExecStart as its user, with its state and cache directories.
SERVICE_PID=
start_service() {
    local exec_start workdir
    exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/orion.service)
    workdir=$(sed -n 's/^WorkingDirectory=//p' /lib/systemd/system/orion.service)
    install -d -o orion -g orion -m 0700 /var/lib/orion /var/cache/orion
    # shellcheck disable=SC2086 # the unit's command line, split as systemd does
    (cd "$workdir" && exec env -i PATH=/usr/bin:/bin STATE_DIRECTORY=/var/lib/orion \
        CACHE_DIRECTORY=/var/cache/orion RUST_LOG=warn \
        setpriv --reuid orion --regid orion --init-groups $exec_start) &
    SERVICE_PID=$!
}
stop_service() {
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    local waited=0
    while kill -0 "$SERVICE_PID" 2>/dev/null && [ "$waited" -lt 150 ]; do
        sleep 0.2
        waited=$((waited + 1))
    done
    kill -KILL "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
}
# wait_event TOPIC TYPE SECONDS: the first message on TOPIC whose payload names
# TYPE. The subscriber is tried again while the broker is not up yet.
wait_event() {
    local deadline=$(($(date +%s) + $3)) line left pid fifo=/tmp/subscriber
    while [ "$(date +%s)" -lt "$deadline" ]; do
        left=$((deadline - $(date +%s)))
        [ "$left" -ge 1 ] || left=1
        rm -f "$fifo"
        mkfifo "$fifo"
        timeout "$left" mosquitto_sub -h 127.0.0.1 -p 1883 -t "$1" -v >"$fifo" 2>/dev/null &
        pid=$!
        while IFS= read -r line; do
            case $line in *"\"$2\""*)
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                echo "$line"
                return 0 ;;
            esac
        done <"$fifo"
        # The subscriber ended: refused (the broker is not up yet) or timed out.
        wait "$pid" 2>/dev/null || true
        sleep 0.2
    done
    return 1
}

start=$(date +%s%N)
apt_get install "$DEB" >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; fail "apt-get install"; }
ok "installed in $(( ($(date +%s%N) - start) / 1000000 )) ms"
[ "$(dpkg-query -W -f='${Status}' orion)" = "install ok installed" ] || fail "dpkg does not list orion as installed"
id -nG orion | grep -qw video || fail "user orion is missing or not in group video"
ok "user orion, in group video"
[ "$(stat -c '%a %U:%G' /etc/orion/orion.env)" = "640 root:orion" ] || fail "orion.env is $(stat -c '%a %U:%G' /etc/orion/orion.env)"
ok "secrets file 0640 root:orion"
[ -L /etc/systemd/system/multi-user.target.wants/orion.service ] || fail "the service is not enabled"
ok "service enabled"
[ -n "$(find /usr/lib/orion/venv -name '*.pyc' -path '*numpy*' -print -quit)" ] || fail "the worker's Python was not compiled"
/usr/bin/oriond validate --config /etc/orion/orion.yaml >/dev/null || fail "the installed config does not validate"

start_service
event=$(wait_event 'care/events/#' person_entered 120) || fail "the service published no person_entered within 120 s"
ok "the service runs the demo: $event"
stop_service
[ -d /var/lib/orion/outbox ] || fail "no outbox in the state directory"

# The operator's changes and the state survive an upgrade.
sed -i 's/^room_id: .*/room_id: upgraded-room/' /etc/orion/orion.yaml
echo 'ORION_MQTT_PASSWORD=kept' >>/etc/orion/orion.env
touch /var/lib/orion/outbox/kept /var/cache/orion/kept
apt_get install "$UPGRADE" >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; fail "apt-get install (upgrade)"; }
version=$(dpkg-query -W -f='${Version}' orion)
[ "$version" = "$(dpkg-deb -f "$UPGRADE" Version)" ] || fail "after the upgrade dpkg has version $version"
grep -q '^room_id: upgraded-room' /etc/orion/orion.yaml || fail "the upgrade replaced the edited config"
grep -q '^ORION_MQTT_PASSWORD=kept' /etc/orion/orion.env || fail "the upgrade replaced the secrets"
[ -e /var/lib/orion/outbox/kept ] && [ -e /var/cache/orion/kept ] || fail "the upgrade removed state or cache"
ok "upgraded to $version: config, secrets, state and cache kept"

apt_get purge orion >/tmp/apt.log 2>&1 || { tail -n 30 /tmp/apt.log; fail "apt-get purge"; }
for path in /etc/orion /var/lib/orion /var/cache/orion /usr/lib/orion /usr/share/orion /usr/bin/oriond \
    /etc/systemd/system/multi-user.target.wants/orion.service; do
    [ ! -e "$path" ] && [ ! -L "$path" ] || fail "purge left $path"
done
! getent passwd orion >/dev/null || fail "purge left the user orion"
! getent group orion >/dev/null || fail "purge left the group orion"
ok "purged: no file, directory, link or user left"
