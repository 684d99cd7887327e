# Where os-apply-config looks for templates in the image (its built-in
# default); the install scripts and the tests read this one setting.
export DIB_OAC_TEMPLATE_ROOT=${DIB_OAC_TEMPLATE_ROOT:-/usr/libexec/os-apply-config/templates}
