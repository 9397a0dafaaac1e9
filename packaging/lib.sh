# Shared by packaging/install.sh and scripts/package.sh (sourced, not run).

# installed_config MODELS DEMO PYTHON DOCS: config/orion.yaml on stdout with
# absolute paths: the models in MODELS, the demo video DEMO, the worker run by
# PYTHON, the documents in DOCS. The service runs the demo until the camera and
# broker are set.
installed_config() {
    local models=$1 demo=$2 python=$3 docs=$4
    sed -e "s|path: assets/demo.mp4|path: $demo|" \
        -e "s|path: models/|path: $models/|" -e "s|int8: models/|int8: $models/|" \
        -e "s|command: \[\".venv/bin/python\"|command: [\"$python\"|" \
        -e "s|# Every key is documented in docs/config.md; relative paths are relative to the|# Every key is documented in $docs/config.md. Upgrades keep this file|" \
        -e "s|# directory oriond is started from (the repository root in the README).|# (compare it with the new defaults after an upgrade).|" \
        -e "s|(docs/\([a-z-]*\.md\)|($docs/\1|g" \
        config/orion.yaml
}

# installed_unit BINDIR ETC WORKDIR DOCS: packaging/orion.service on stdout
# with its placeholders filled in.
installed_unit() {
    sed -e "s|@BINDIR@|$1|g" -e "s|@ETC@|$2|g" -e "s|@WORKDIR@|$3|g" -e "s|@DOCS@|$4|g" \
        packaging/orion.service
}

# The secrets file written once at the first install (systemd EnvironmentFile).
secrets_template() {
    cat <<'ENV'
# Secrets for the Orion service (systemd EnvironmentFile): KEY=value, one a line.
# Never passed to the inference workers, never logged.
#ORION_MQTT_USERNAME=sensor-101
#ORION_MQTT_PASSWORD=
#ORION_RTSP_URL=rtsp://user:password@camera-101/stream1
ENV
}
