#!/usr/bin/python
# GNU General Public License v2.0 or later (see COPYING or
# https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
"""Ansible module: apply the crashkernel= reservation with `mkkdumprd crashkernel apply`."""

from __future__ import annotations

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mkkdumprd.kdump.plugins.module_utils.mkkdumprd_cli import run_checked

DOCUMENTATION = r"""
---
module: mkkdumprd_crashkernel
short_description: Write crashkernel= into the boot configuration with mkkdumprd
description:
  - Runs C(mkkdumprd crashkernel apply --dry-run) to learn the change, then applies it.
    C(changed) is true only when mkkdumprd reports a difference; C(--check) shows the
    diff and writes nothing.
  - After a change, regenerates the grub configuration with C(update-grub) when the
    machine has it and O(root) is C(/).
  - Reports whether a reboot is needed for the reservation to take effect.
options:
  value:
    description:
      - The crashkernel= value or set (canonical grammar, e.g. C(512M),
        C(96M 256M,cma), C(1G-4G:192M,4G-:256M)). Default is the architecture's table,
        or with O(recommended) what C(mkkdumprd crashkernel recommend) gives.
    type: str
  recommended:
    description:
      - Write what C(mkkdumprd crashkernel recommend) gives for this machine, recorded
        as a recommendation so that C(auto_reset_crashkernel) may replace it later.
    type: bool
    default: false
  root:
    description: The system whose boot configuration is changed.
    type: path
    default: /
  force:
    description: Override a crashkernel= value set by hand.
    type: bool
    default: false
  update_bootloader:
    description: Run C(update-grub) after a change (when present and O(root) is C(/)).
    type: bool
    default: true
  executable:
    description: The mkkdumprd program.
    type: str
    default: mkkdumprd
author:
  - mkkdumprd developers
"""

EXAMPLES = r"""
- name: Reserve the recommended crash kernel memory
  mkkdumprd.kdump.mkkdumprd_crashkernel:
  register: crashkernel

- name: Reserve what mkkdumprd recommends for this machine
  mkkdumprd.kdump.mkkdumprd_crashkernel:
    recommended: true

- name: Reserve a small base plus CMA memory the running kernel can use meanwhile
  mkkdumprd.kdump.mkkdumprd_crashkernel:
    value: 96M 256M,cma
"""

RETURN = r"""
diff_text:
  description: The unified diff mkkdumprd printed (empty when nothing changes).
  returned: always
  type: str
reserved:
  description: >-
    Bytes the running kernel reserved for a crash kernel (/sys/kernel/kexec_crash_size),
    null when it cannot be read (another root, a chroot without /sys).
  returned: always
  type: int
reboot_required:
  description: A reboot is needed before a capture kernel can be loaded.
  returned: always
  type: bool
"""


UNCHANGED = "already set; nothing to do"


def _reserved(root):
    path = os.path.join(root, "sys/kernel/kexec_crash_size")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _diff_text(stdout):
    """The diff part of apply's output (its notes start with 'note:' or 'dry run:')."""
    lines = [ln for ln in stdout.splitlines()
             if not ln.startswith(("note:", "dry run:", "wrote "))]
    return "\n".join(lines) + ("\n" if lines else "")


def main():
    module = AnsibleModule(
        argument_spec={
            "value": {"type": "str"},
            "recommended": {"type": "bool", "default": False},
            "root": {"type": "path", "default": "/"},
            "force": {"type": "bool", "default": False},
            "update_bootloader": {"type": "bool", "default": True},
            "executable": {"type": "str", "default": "mkkdumprd"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["value"] and p["recommended"]:
        module.fail_json(msg="value and recommended: true exclude each other")
    exe = module.get_bin_path(p["executable"], required=True)
    argv = [exe, "crashkernel", "apply", "--root", p["root"]]
    if p["value"]:
        argv += ["--value", p["value"]]
    if p["recommended"]:
        argv.append("--recommended")
    if p["force"]:
        argv.append("--force")

    out, err = run_checked(module, [*argv, "--dry-run"])
    changed = UNCHANGED not in out
    diff_text = _diff_text(out) if changed else ""
    result = {"changed": changed, "diff_text": diff_text, "stdout": out, "stderr": err}
    if module._diff and changed:
        result["diff"] = {"prepared": diff_text}
    if changed and not module.check_mode:
        out, err = run_checked(module, argv)
        result["stdout"], result["stderr"] = out, err
        grub = module.get_bin_path("update-grub")
        if p["update_bootloader"] and grub and os.path.realpath(p["root"]) == "/":
            rc, _gout, gerr = module.run_command([grub])
            if rc != 0:
                module.fail_json(msg=f"update-grub failed: {gerr.strip()}", rc=rc)
    reserved = _reserved(p["root"])
    result["reserved"] = reserved
    result["reboot_required"] = changed or reserved == 0
    module.exit_json(**result)


if __name__ == "__main__":
    main()
