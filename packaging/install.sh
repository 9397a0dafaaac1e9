#!/usr/bin/env bash
# Installs Orion as a service, from a checkout where scripts/setup.sh has run:
#   PREFIX (/opt/orion)   bin/oriond, bin/orionctl, venv/ (the worker), models/,
#                         share/demo.mp4, docs/
#   ETC (/etc/orion)      orion.yaml (kept if present: upgrades never touch it),
#                         orion.env (secrets, mode 0640 root:orion, kept if present)
#   UNIT_DIR              orion.service (/etc/systemd/system)
# and the system user `orion` (in group `video` for USB cameras). It does not
# enable or start the service unless --enable is given.
#
# usage: packaging/install.sh [--prefix DIR] [--etc DIR] [--unit-dir DIR]
#                             [--python PATH] [--no-user] [--no-systemctl] [--enable]
#   --python PATH   run the workers with this Python (which must have the
#                   orion_worker package) instead of creating PREFIX/venv
#   --no-user       do not create the `orion` user (staging, tests)
#   --no-systemctl  do not call systemctl (staging, tests, no systemd)
#   --enable        systemctl enable --now orion (after a first install)
# Idempotent: running it again upgrades binaries, worker and model in place.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/lib.sh

PREFIX=/opt/orion
ETC=/etc/orion
UNIT_DIR=/etc/systemd/system
PYTHON=
MAKE_USER=1
SYSTEMCTL=1
ENABLE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --etc) ETC=$2; shift 2 ;;
        --unit-dir) UNIT_DIR=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --no-user) MAKE_USER=0; shift ;;
        --no-systemctl) SYSTEMCTL=0; shift ;;
        --enable) ENABLE=1; shift ;;
        # The comment block at the top, without its `# ` (and nothing after it).
        -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
        *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for d in "$PREFIX" "$ETC" "$UNIT_DIR"; do
    case "$d" in /*) ;; *) echo "install: $d must be an absolute path" >&2; exit 2 ;; esac
done

say() { echo "install: $*" >&2; }

[ -x target/release/oriond ] && [ -x target/release/orionctl ] || {
    say "target/release/oriond is missing: run scripts/setup.sh first"
    exit 1
}

say "binaries -> $PREFIX/bin"
install -d -m 0755 "$PREFIX/bin" "$PREFIX/models" "$PREFIX/share" "$PREFIX/docs"
install -m 0755 target/release/oriond target/release/orionctl "$PREFIX/bin/"

say "model -> $PREFIX/models"
install -m 0644 models/*.onnx models/*.int8.xml models/*.int8.bin models/*.int8.check.json \
    models/SHA256SUMS models/README.md "$PREFIX/models/"
(cd "$PREFIX/models" && sha256sum --quiet -c SHA256SUMS)
install -m 0644 assets/demo.mp4 "$PREFIX/share/demo.mp4"
install -m 0644 docs/*.md "$PREFIX/docs/"

if [ -n "$PYTHON" ]; then
    "$PYTHON" -c 'import orion_worker' || { say "$PYTHON cannot import orion_worker"; exit 1; }
    WORKER_PYTHON=$PYTHON
else
    say "worker venv -> $PREFIX/venv (pip, a minute the first time)"
    [ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
    "$PREFIX/venv/bin/pip" install -q --upgrade pip
    # Not editable: the service must not depend on this checkout. Built from a
    # copy, so that the checkout gets no build/ folder.
    src=$(mktemp -d)
    cp -r workers/python "$src/"
    rm -rf "$src/python/build" "$src/python"/*.egg-info
    "$PREFIX/venv/bin/pip" install -q --upgrade "$src/python"
    rm -rf "$src"
    "$PREFIX/venv/bin/python" -m compileall -q "$PREFIX/venv" >/dev/null || true
    WORKER_PYTHON=$PREFIX/venv/bin/python
fi

if [ "$MAKE_USER" = 1 ] && ! id orion >/dev/null 2>&1; then
    say "system user orion"
    getent group video >/dev/null || groupadd --system video
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --user-group --groups video orion
fi
GROUP=root
if [ "$MAKE_USER" = 1 ]; then GROUP=orion; fi

install -d -m 0755 "$ETC"
if [ -e "$ETC/orion.yaml" ]; then
    say "$ETC/orion.yaml exists: kept (compare with config/orion.yaml after upgrades)"
else
    say "config -> $ETC/orion.yaml"
    installed_config "$PREFIX/models" "$PREFIX/share/demo.mp4" "$WORKER_PYTHON" "$PREFIX/docs" >"$ETC/orion.yaml"
    chmod 0644 "$ETC/orion.yaml"
fi
if [ ! -e "$ETC/orion.env" ]; then
    say "secrets file -> $ETC/orion.env (mode 0640)"
    secrets_template >"$ETC/orion.env"
    chmod 0640 "$ETC/orion.env"
    chgrp "$GROUP" "$ETC/orion.env"
fi

say "unit -> $UNIT_DIR/orion.service"
install -d -m 0755 "$UNIT_DIR"
installed_unit "$PREFIX/bin" "$ETC" "$PREFIX" "$PREFIX/docs" >"$UNIT_DIR/orion.service"
chmod 0644 "$UNIT_DIR/orion.service"

"$PREFIX/bin/oriond" validate --config "$ETC/orion.yaml" >&2

if [ "$SYSTEMCTL" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$ENABLE" = 1 ]; then
        systemctl enable --now orion
    elif systemctl is-active --quiet orion; then
        say "restarting the running service on the new version"
        systemctl restart orion
    fi
fi
say "OK ($PREFIX, $ETC, $UNIT_DIR/orion.service)"
