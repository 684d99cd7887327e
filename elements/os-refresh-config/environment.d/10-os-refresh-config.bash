# The os-refresh-config base directory in the image (the tool's default).
export DIB_ORC_BASE_DIR=${DIB_ORC_BASE_DIR:-/usr/libexec/os-refresh-config}
