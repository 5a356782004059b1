#!/usr/bin/python
# GNU General Public License v2.0 or later (see COPYING or
# https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
"""Ansible module: build and load the capture image with mkkdumprd, and say honestly
whether anything changed."""

from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mkkdumprd.kdump.plugins.module_utils.mkkdumprd_cli import run_checked

DOCUMENTATION = r"""
---
module: mkkdumprd_service
short_description: Build and load the kdump capture image with mkkdumprd
description:
  - C(loaded) runs C(mkkdumprd start) unless C(mkkdumprd status) already says a capture
    kernel is loaded, then checks that C(mkkdumprd status) says it is loaded; a start
    that loads nothing (no crashkernel= reservation, a root that is not the running
    system) fails.
  - C(restarted) runs C(mkkdumprd restart) (rebuild when an input changed, unload,
    load) and checks C(mkkdumprd status) afterwards.
  - C(built) only builds (C(mkkdumprd build)), for roots that are not the running
    system, such as a chroot or an image being prepared, where nothing can be loaded.
    C(changed) is false when mkkdumprd found the image up to date.
  - In check mode nothing is run but C(mkkdumprd status); C(loaded) reports a change
    when no capture kernel is loaded, C(built) reports none (whether a rebuild is due is
    known only by building).
options:
  state:
    description: What to make true.
    type: str
    choices: [loaded, restarted, built]
    default: loaded
  root:
    description: The system acted on (C(--root)); loads happen only for C(/).
    type: path
    default: /
  build_args:
    description: Extra arguments of C(mkkdumprd build) (state C(built) only).
    type: list
    elements: str
    default: []
  executable:
    description: The mkkdumprd program.
    type: str
    default: mkkdumprd
author:
  - mkkdumprd developers
"""

EXAMPLES = r"""
- name: Build and load the capture kernel
  mkkdumprd.kdump.mkkdumprd_service:
    state: loaded

- name: Build only, inside a chroot
  mkkdumprd.kdump.mkkdumprd_service:
    state: built
    build_args: [--no-hostonly, --add-drivers, virtio_pci,virtio_net]
"""

RETURN = r"""
status:
  description: C(mkkdumprd status --json) after the run (states loaded and restarted).
  returned: when state is loaded or restarted
  type: dict
stdout:
  description: What mkkdumprd printed.
  returned: always
  type: str
"""


UP_TO_DATE = "up to date: "


def _status(module, exe, root):
    # exit 0: loaded, 3: not loaded; the JSON comes in both cases
    rc, out, err = module.run_command([exe, "status", "--json", "--root", root])
    if rc not in (0, 3):
        module.fail_json(msg=(err or out).strip() or f"mkkdumprd status exited {rc}", rc=rc)
    try:
        return json.loads(out)
    except ValueError:
        module.fail_json(msg=f"mkkdumprd status --json printed no JSON: {out[:200]!r}")


def _require_loaded(module, exe, root, out, err):
    status = _status(module, exe, root)
    if not status.get("loaded"):
        module.fail_json(msg="mkkdumprd ran but no capture kernel is loaded "
                             f"(mkkdumprd status): {out.strip()[-400:]}",
                         stdout=out, stderr=err, status=status)
    return status


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "default": "loaded",
                      "choices": ["loaded", "restarted", "built"]},
            "root": {"type": "path", "default": "/"},
            "build_args": {"type": "list", "elements": "str", "default": []},
            "executable": {"type": "str", "default": "mkkdumprd"},
        },
        supports_check_mode=True,
    )
    p = module.params
    exe = module.get_bin_path(p["executable"], required=True)
    root, state = p["root"], p["state"]

    if state == "built":
        if module.check_mode:
            module.exit_json(changed=False, stdout="",
                             msg="check mode: whether a rebuild is due is known only by "
                                 "building; not run")
        out, err = run_checked(module, [exe, "build", *p["build_args"]])
        kept = any(ln.startswith(UP_TO_DATE) for ln in out.splitlines())
        module.exit_json(changed=not kept, stdout=out, stderr=err)

    if state == "loaded":
        status = _status(module, exe, root)
        if status.get("loaded"):
            module.exit_json(changed=False, status=status, stdout="")
        if module.check_mode:
            module.exit_json(changed=True, status=status, stdout="")
        out, err = run_checked(module, [exe, "start", "--root", root])
    else:
        if module.check_mode:
            module.exit_json(changed=True, status=_status(module, exe, root), stdout="")
        out, err = run_checked(module, [exe, "restart", "--root", root])
    status = _require_loaded(module, exe, root, out, err)
    module.exit_json(changed=True, status=status, stdout=out, stderr=err)


if __name__ == "__main__":
    main()
