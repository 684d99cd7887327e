# Boot settings for a cloud guest (see README.rst).  This file sorts before
# the bootloader element's 10-bootloader-default-cmdline, so the defaults
# set here are the ones it sees; a value set by the caller still wins.

# Kernel modules kept out of the initramfs and the root filesystem: the
# floppy driver probes a drive qemu/KVM guests report but never have, and
# every blkid scan at boot waits for its read to time out.
export DIB_FAST_BOOT_BLACKLIST_MODULES=${DIB_FAST_BOOT_BLACKLIST_MODULES-floppy}
# Units a first boot of a cloud image does not need (disabled, not removed).
export DIB_FAST_BOOT_DISABLE_UNITS=${DIB_FAST_BOOT_DISABLE_UNITS-e2scrub_reap.service}
# No GRUB menu wait: nobody is at a cloud guest's console to choose.
export DIB_GRUB_TIMEOUT=${DIB_GRUB_TIMEOUT:-0}

_fast_boot_cmdline=""
read -r -a _fast_boot_modules <<< "$DIB_FAST_BOOT_BLACKLIST_MODULES"
if [ "${#_fast_boot_modules[@]}" -gt 0 ]; then
    _fast_boot_cmdline=" modprobe.blacklist=$(IFS=,; echo "${_fast_boot_modules[*]}")"
fi
# The bootloader element's own default, plus the blacklist: the initramfs
# honours modprobe.blacklist= too, so it needs no rebuild.
export DIB_BOOTLOADER_DEFAULT_CMDLINE=${DIB_BOOTLOADER_DEFAULT_CMDLINE:-"nofb nomodeset gfxpayload=text$_fast_boot_cmdline"}
unset _fast_boot_cmdline _fast_boot_modules

# Refused here, when disk-image-create starts, rather than after the
# packages are installed (post-install.d checks again before writing the
# unit file).
for _fast_boot_type in ${DIB_FAST_BOOT_LATE_SSH_HOST_KEY_TYPES-rsa}; do
    case "$_fast_boot_type" in
        rsa|ecdsa|ed25519) ;;
        *)
            echo "ERROR: DIB_FAST_BOOT_LATE_SSH_HOST_KEY_TYPES: '$_fast_boot_type' is not rsa, ecdsa or ed25519 (fast-boot element)" >&2
            return 1
            ;;
    esac
done
unset _fast_boot_type
