# cloud-init reads the server's user data (including Heat's cfn-init-data
# part) from the config drive first; set by the cloud-init-datasources
# element, which fails when this is empty.
export DIB_CLOUD_INIT_DATASOURCES=${DIB_CLOUD_INIT_DATASOURCES:-"ConfigDrive, OpenStack"}
