# GNU General Public License v2.0 or later (see COPYING or
# https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
"""What the collection's modules share: running the mkkdumprd command line."""

from __future__ import annotations


def run_checked(module, argv):
    """Run `argv` (mkkdumprd and its arguments); a non-zero exit fails the task with
    mkkdumprd's own one-line error. Returns (stdout, stderr)."""
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=(err or out).strip() or f"mkkdumprd {argv[1]} exited {rc}",
                         rc=rc, stdout=out, stderr=err)
    return out, err
