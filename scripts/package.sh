#!/usr/bin/env bash
# Builds the Debian 12 package orion_<version>_amd64.deb from a checkout where
# scripts/setup.sh has run. Installing it needs no compiler and no network:
#   /usr/bin/oriond, /usr/bin/orionctl     the daemon and the operator client
#   /usr/lib/orion/venv                     the inference worker with its Python
#                                           packages (from a wheelhouse built here)
#   /usr/share/orion/models, demo.mp4       the models (FP32, INT8, checks), the demo
#   /etc/orion/orion.yaml                   the demo config (a conffile: kept on upgrade)
#   /lib/systemd/system/orion.service       enabled and started on install
#   /usr/share/doc/orion                    the documents
# and, made by the package's scripts: the system user `orion`, /etc/orion/orion.env
# (secrets, 0640), /var/lib/orion and /var/cache/orion (removed on purge).
#
# usage: scripts/package.sh [--out DIR] [--version VERSION] [--fast]
#   --out DIR          where the .deb goes (default target/package)
#   --version VERSION  the package version (default: the workspace version)
#   --fast             light compression (tests); a release uses the default
# The wheels are downloaded from PyPI once, at the versions the project's venv
# was tested with, into target/package/wheelhouse; later runs are offline.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/lib.sh

OUT=target/package
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
COMPRESS=(-Zxz -z6)
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "package: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) need_value "$@"; OUT=$2; shift 2 ;;
        --version) need_value "$@"; VERSION=$2; shift 2 ;;
        --fast) COMPRESS=(-Zgzip -z1); shift ;;
        -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
        *) echo "package: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { echo "package: $*" >&2; }
# A Debian version: digits first, then letters, digits and . + ~ - only.
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { say "version '$VERSION' is not a Debian version (e.g. 0.1.0, 0.1.0+site1)"; exit 2; }
# The worker's wheels are built for the project venv's Python, which must be
# the system's Python the package runs on.
PYTHON_VERSION=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
SYSTEM_PYTHON=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)

for bin in oriond orionctl; do
    [ -x "target/release/$bin" ] || { say "target/release/$bin is missing: run scripts/setup.sh first"; exit 1; }
done
[ -x .venv/bin/pip ] || { say ".venv is missing: run scripts/setup.sh first"; exit 1; }
[ -n "$PYTHON_VERSION" ] && [ "$PYTHON_VERSION" = "$SYSTEM_PYTHON" ] || {
    say "the project venv runs Python $PYTHON_VERSION and /usr/bin/python3 is $SYSTEM_PYTHON: they must be the same"
    exit 1
}
PYTHON_NEXT="${PYTHON_VERSION%.*}.$((${PYTHON_VERSION#*.} + 1))"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WHEELS=$PWD/target/package/wheelhouse
STAGE=$(mktemp -d)
BUILD=$(mktemp -d)
trap 'rm -rf "$STAGE" "$BUILD"' EXIT
ROOT=$STAGE/root
VENV=/usr/lib/orion/venv
SHARE=/usr/share/orion
DOC=/usr/share/doc/orion

# The worker's packages at the versions the tests ran with.
.venv/bin/pip freeze --exclude-editable >"$BUILD/constraints.txt"
# The worker wheel is built from a copy: the checkout gets no build/ folder.
cp -r workers/python "$BUILD/worker"
rm -rf "$BUILD/worker/build" "$BUILD/worker"/*.egg-info
say "wheelhouse -> $WHEELS"
if ! .venv/bin/pip wheel -q --no-index --find-links "$WHEELS" -c "$BUILD/constraints.txt" \
        --wheel-dir "$WHEELS" "$BUILD/worker" 2>/dev/null; then
    say "downloading the worker's Python packages (once)"
    # setuptools: to build the worker's wheel offline next time.
    .venv/bin/pip wheel -q -c "$BUILD/constraints.txt" --wheel-dir "$WHEELS" "$BUILD/worker" 'setuptools>=77'
fi

say "worker venv -> $VENV"
install -d "$ROOT/usr/lib/orion"
/usr/bin/python3 -m venv --without-pip "$ROOT$VENV"
.venv/bin/pip --python "$ROOT$VENV/bin/python" install -q --no-index --no-compile \
    --find-links "$WHEELS" -c "$BUILD/constraints.txt" orion-worker
# Only the interpreter links stay in bin/: the scripts pip wrote name the
# staging directory, and the worker runs as `python -m`.
find "$ROOT$VENV/bin" -mindepth 1 ! -name 'python*' -delete
find "$ROOT$VENV" -name direct_url.json -delete
# Modules and shared objects are loaded, never run.
find "$ROOT$VENV/lib" -type f -exec chmod 0644 {} +
# pyvenv.cfg records the command that made it (informational).
sed -i "s|$ROOT||g" "$ROOT$VENV/pyvenv.cfg"
if grep -rlq --binary-files=without-match "$STAGE" "$ROOT$VENV"; then
    say "the venv names the staging directory:"
    grep -rl --binary-files=without-match "$STAGE" "$ROOT$VENV" >&2
    exit 1
fi

say "binaries, models, demo, config, unit, documents"
install -d "$ROOT/usr/bin" "$ROOT$SHARE/models" "$ROOT$DOC" "$ROOT/etc/orion" \
    "$ROOT/lib/systemd/system" "$ROOT/usr/share/man/man1" "$ROOT/usr/share/man/man8" \
    "$ROOT/usr/share/lintian/overrides"
for bin in oriond orionctl; do
    install -m 0755 "target/release/$bin" "$ROOT/usr/bin/"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$ROOT/usr/bin/$bin"
done
install -m 0644 models/*.onnx models/*.int8.xml models/*.int8.bin models/*.int8.check.json \
    models/SHA256SUMS models/README.md "$ROOT$SHARE/models/"
(cd "$ROOT$SHARE/models" && sha256sum --quiet -c SHA256SUMS)
install -m 0644 assets/demo.mp4 "$ROOT$SHARE/demo.mp4"
secrets_template >"$ROOT$SHARE/orion.env.template"
installed_config "$SHARE/models" "$SHARE/demo.mp4" "$VENV/bin/python" "$DOC" >"$ROOT/etc/orion/orion.yaml"
installed_unit /usr/bin /etc/orion /var/lib/orion "$DOC" >"$ROOT/lib/systemd/system/orion.service"
install -m 0644 README.md docs/*.md "$ROOT$DOC/"
install -m 0644 packaging/debian/copyright "$ROOT$DOC/copyright"
printf 'orion (%s) stable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
    "$VERSION" "$VERSION" "Orion developers <orion@example.org>" \
    "$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")" \
    | gzip -9n >"$ROOT$DOC/changelog.gz"
for page in packaging/debian/*.[18]; do
    gzip -9n <"$page" >"$ROOT/usr/share/man/man${page##*.}/$(basename "$page").gz"
done
install -m 0644 packaging/debian/lintian-overrides "$ROOT/usr/share/lintian/overrides/orion"
chmod -R u+rwX,go+rX,go-w "$ROOT"

say "control"
install -d "$ROOT/DEBIAN"
mkdir -p "$BUILD/shlibs/debian"
printf 'Source: orion\n\nPackage: orion\nArchitecture: amd64\n' >"$BUILD/shlibs/debian/control"
if ! shlibs=$(cd "$BUILD/shlibs" && dpkg-shlibdeps -O --warnings=0 -e "$ROOT/usr/bin/oriond" \
        -e "$ROOT/usr/bin/orionctl" 2>"$BUILD/shlibdeps.err" | sed -n 's/^shlibs:Depends=//p') ||
        [ -z "$shlibs" ]; then
    cat "$BUILD/shlibdeps.err" >&2
    say "dpkg-shlibdeps found no library dependencies of the binaries"
    exit 1
fi
size=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat >"$ROOT/DEBIAN/control" <<CONTROL
Package: orion
Version: $VERSION
Architecture: amd64
Maintainer: Orion developers <orion@example.org>
Installed-Size: $size
Depends: $shlibs, python3 (>= $PYTHON_VERSION), python3 (<< $PYTHON_NEXT), adduser, init-system-helpers (>= 1.54~), gstreamer1.0-plugins-base, gstreamer1.0-plugins-good, gstreamer1.0-plugins-bad, gstreamer1.0-libav
Recommends: mosquitto-clients
Section: video
Priority: optional
Description: edge video sensor daemon for care rooms
 Orion watches cameras (RTSP, USB, files), finds people, their posture and
 falls with ONNX models in supervised worker processes, and publishes
 presence, occupancy, zones, care alerts and Home Assistant entities over
 MQTT. It ships the models, the inference worker with its Python packages,
 and a demo configuration that runs without a camera or a broker.
CONTROL
echo /etc/orion/orion.yaml >"$ROOT/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$ROOT/DEBIAN/"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/md5sums" "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles"

deb="$OUT/orion_${VERSION}_amd64.deb"
say "build $deb"
dpkg-deb --root-owner-group "${COMPRESS[@]}" --build "$ROOT" "$deb" >/dev/null
say "OK ($deb, $(($(stat -c %s "$deb") / 1000000)) MB, installed $((size * 1024 / 1000000)) MB)"
