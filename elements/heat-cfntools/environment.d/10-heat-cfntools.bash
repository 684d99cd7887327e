# cloud-init reads the server's user data (including Heat's cfn-init-data
# part) from the config drive first; set by the cloud-init-datasources
# element, which fails when this is empty.
export DIB_CLOUD_INIT_DATASOURCES=${DIB_CLOUD_INIT_DATASOURCES:-"ConfigDrive, OpenStack"}
# cloud-init writes the network configuration from the config drive (or
# DHCP on the first interface): no interface stanzas baked in by debootstrap,
# whose eth0 names do not exist with predictable interface names.
export DIB_APT_MINIMAL_CREATE_INTERFACES=${DIB_APT_MINIMAL_CREATE_INTERFACES:-0}
# The instance's host name resolves locally (127.0.1.1 in /etc/hosts, kept
# up to date by cloud-init's update_etc_hosts module; the rest of the file
# is the user's): without it every sudo warns "unable to resolve host" and
# waits for a DNS answer.  Read by diskimage-builder's base element; set it
# empty for cloud-init's default (no management).
export DIB_CLOUD_INIT_ETC_HOSTS=${DIB_CLOUD_INIT_ETC_HOSTS-localhost}
