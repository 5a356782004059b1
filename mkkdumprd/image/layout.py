"""Where things are in the capture image, and the capture kernel's files the scripts use.

The one list of these paths: hooks place files with them, the builder gives them to every
template as `paths.<name>` (tainted like every other value, so printed with `| shq`), and a
test checks that the `dest` of each template in modules.d is one of them. Templates never
spell an image path themselves.
"""

from __future__ import annotations

from types import MappingProxyType

LIBDIR = "/lib/kdump"
INIT = "/init"
LIB_SH = f"{LIBDIR}/lib.sh"
INIT_D = f"{LIBDIR}/init.d"              # stages /init sources in name order
MEMSTAT_SH = f"{INIT_D}/10-memstat.sh"   # kdump.memstat: the peak for mkkdumprd test --vm
MEMSTAT_FILE = "/run/kdump-memstat"      # its sampler's least MemAvailable so far
MODULES_SH = f"{INIT_D}/20-modules.sh"
WATCHDOG_SH = f"{INIT_D}/30-watchdog.sh"  # after the modules (the drivers), before the dump
KDUMP_SH = f"{INIT_D}/90-kdump.sh"
FENCE_KDUMP_SH = f"{INIT_D}/80-fence-kdump.sh"   # fence_kdump: tell the peers, then dump
EMERGENCY_SH = f"{INIT_D}/10-emergency.sh"       # kdump_emergency: defines the failure hook
COLLECTOR_SH = f"{LIBDIR}/collector.sh"
TARGET_SH = f"{LIBDIR}/target.sh"         # the one dump target's script (local, raw, nfs, ssh)
ROOTFS_SH = f"{LIBDIR}/rootfs.sh"
STORAGE_SH = f"{LIBDIR}/storage.sh"      # md/LVM/LUKS set-up under a local target
ISCSI_SH = f"{LIBDIR}/iscsi.sh"          # iSCSI login under a local target (CHAP: 0600)
LVM_CONF = "/etc/lvm/lvm.conf"
MDADM_CONF = "/etc/mdadm/mdadm.conf"
MULTIPATH_CONF = "/etc/multipath.conf"
UDEV_DATA = "/run/udev/data"             # multipath takes only devices udev "initialized"
STORAGE_LOG = "/run/kdump/storage.log"   # what mdadm/lvm/cryptsetup said, shown on failure
NETWORK_SH = f"{LIBDIR}/network.sh"
UDHCPC_SH = f"{LIBDIR}/udhcpc.sh"
PRE_D = "/etc/kdump/pre.d"               # hook directories, as Fedora
POST_D = "/etc/kdump/post.d"
EMERGENCY_D = "/etc/kdump/emergency.d"
MODDIR = "/lib/modules"
MOUNT_POINT = "/kdumproot"               # the dump target is mounted here
SYSROOT = "/sysroot"                     # the root filesystem, for dump_to_rootfs
RESOLV_CONF = "/etc/resolv.conf"         # the host's name servers; udhcpc's lease rewrites it
SSH_DIR = "/root/.ssh"
SSH_KEY = f"{SSH_DIR}/kdump_id"
SSH_KNOWN_HOSTS = f"{SSH_DIR}/known_hosts"
# dump_policy fallback/all: the Nth target's scripts (N from 2; the first target's are
# TARGET_SH and NETWORK_SH); the dump flow's attempts (one per target, bounded).
_target_sh_n = f"{LIBDIR}/target-%d.sh"
_network_sh_n = f"{LIBDIR}/network-%d.sh"
ATTEMPT_SH = f"{LIBDIR}/attempt.sh"
# The running attempt's files: ATTEMPT.status, .what (its result), .dir (its dump directory).
ATTEMPT = "/run/kdump/attempt"
# The collector's expected output size in bytes (makedumpfile's dry run), once per boot.
ESTIMATE = "/run/kdump/estimate"
# What the /init says (kinfo/kwarn/kerr), the start of each dump's kexec-dmesg.log.
INIT_LOG = "/run/kdump/init.log"
# One line per dump attempt, written by the dump flow, read by the outcome record:
# "TARGET_DESC<TAB>saved|failed|skipped<TAB>REASON-OR-PATH".
RESULTS = "/run/kdump/results"
# The capture scripts' scratch files (tools' stderr, fifos, dry runs): KDUMP_TMP in lib.sh.
TMP_DIR = "/tmp"
OUTCOME_TMP = "/run/kdump/outcome"     # the record being written, before it is copied out
NETCONSOLE_SH = f"{INIT_D}/30-netconsole.sh"   # kdump.conf netconsole: console over UDP
OUTCOME_SH = f"{INIT_D}/80-outcome.sh"   # the outcome record (records/outcome.py reads it)

# The capture kernel's own files (not in the image).
VMCORE = "/proc/vmcore"
CMDLINE = "/proc/cmdline"
MEMINFO = "/proc/meminfo"
SYSRQ_TRIGGER = "/proc/sysrq-trigger"
CONSOLE = "/dev/console"
SYS_NET = "/sys/class/net"               # the capture kernel's network devices
SYS_ISCSI_SESSION = "/sys/class/iscsi_session"   # the capture kernel's iSCSI sessions
SYS_WATCHDOG = "/sys/class/watchdog"     # the capture kernel's watchdogs ...
WATCHDOG_DEV_DIR = "/dev"                # ... and where their nodes are (watchdogN)
CONFIGFS = "/sys/kernel/config"
SYS_CPU = "/sys/devices/system/cpu"      # the capture kernel's CPUs (makedumpfile threads)
CRASH_DM_CRYPT_KEYS = f"{CONFIGFS}/crash_dm_crypt_keys"   # CONFIG_CRASH_DM_CRYPT (6.16)
KMSG = "/dev/kmsg"                       # the record goes into the kernel log (ramoops keeps it)
PMSG = "/dev/pmsg0"                      # pstore's user message device, where the kernel has it
PRINTK_DEVKMSG = "/proc/sys/kernel/printk_devkmsg"   # "on": no rate limit on /dev/kmsg



def target_script(index: int, first: str) -> str:
    """Where the script `first` (TARGET_SH or NETWORK_SH) of target number `index` (0 for
    the first) is in the image."""
    if index == 0:
        return first
    return (_target_sh_n if first == TARGET_SH else _network_sh_n) % (index + 1)


# What templates see as `paths`: every path above by its lower-case name.
TEMPLATE_PATHS: MappingProxyType[str, str] = MappingProxyType({
    name.lower(): value for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, str)
})
