"""Whether a kernel can hand LUKS volume keys to its capture kernel.

Linux 6.16's CONFIG_CRASH_DM_CRYPT keeps the keys the first kernel is given through
configfs (crash_dm_crypt_keys) in the crash reservation when the capture kernel is loaded
with kexec_file_load; the capture kernel restores them into its keyring. Without it the
capture kernel would need a passphrase nobody can type, or keys stored in the image: the
build is refused instead.
"""

from __future__ import annotations

from pathlib import Path

from mkkdumprd.errors import UsageError
from mkkdumprd.host import Host

OPTION = "CONFIG_CRASH_DM_CRYPT"


def kernel_config(sysroot: Host, kver: str, kmoddir: Path | None = None) -> str | None:
    """The kernel's build configuration (Debian 7.x keeps it beside the modules: in
    `kmoddir` when the build was given one, --kmoddir for another machine's kernel)."""
    if kmoddir is not None:
        try:
            return (kmoddir / "config").read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    for path in (f"/lib/modules/{kver}/config", f"/usr/lib/modules/{kver}/config",
                 f"/boot/config-{kver}"):
        text = sysroot.read_optional(path)
        if text is not None:
            return text
    return None


def has_crash_dm_crypt(config_text: str) -> bool:
    return any(line.strip() == f"{OPTION}=y" for line in config_text.splitlines())


def check_crash_dm_crypt(sysroot: Host, kver: str, kmoddir: Path | None = None) -> None:
    text = kernel_config(sysroot, kver, kmoddir)
    if text is not None and has_crash_dm_crypt(text):
        return
    why = "is built without" if text is not None else "shows no build configuration with"
    raise UsageError(
        f"the dump target is on a LUKS volume, but kernel {kver} {why} {OPTION} (Linux "
        f"6.16+), so the capture kernel could not get the volume key without storing it in "
        f"the image; dump to another target (an unencrypted disk, raw, nfs or ssh) or use a "
        f"kernel with {OPTION}=y"
    )
