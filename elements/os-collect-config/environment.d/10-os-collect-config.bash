# Build-time defaults for /etc/os-collect-config.conf (see README.rst).
export DIB_OS_COLLECT_CONFIG_POLLING_INTERVAL=${DIB_OS_COLLECT_CONFIG_POLLING_INTERVAL:-30}
export DIB_OS_COLLECT_CONFIG_COLLECTORS=${DIB_OS_COLLECT_CONFIG_COLLECTORS:-"heat_local ec2 local"}
# How os-collect-config is installed: "venv" (wheels fetched on the build
# host, installed offline into /opt/os-collect-config) or "package" (the
# distribution's package; on Debian 12 it pulls ~400 MB more, see
# the README, "Packages or a virtualenv?").  package-installs.yaml reads it, so it must be set.
export DIB_OS_COLLECT_CONFIG_INSTALL=${DIB_OS_COLLECT_CONFIG_INSTALL:-venv}
