"""iscsi: the logins of iscsi.sh (target, portal, initiator name, CHAP) and the initiator's
kernel modules, from the iSCSI sessions host-only discovery found under the target."""

from __future__ import annotations

from mkkdumprd.assemble.hooks import BuildContext
from mkkdumprd.errors import UsageError
from mkkdumprd.storage import iscsi


def _luns(ctx: BuildContext) -> list[iscsi.IscsiLun]:
    luns = ctx.target.stack.iscsi_luns() if ctx.target.stack is not None else []
    if not luns:
        # storage_modules() refuses `--add iscsi` without a session; this is a backstop
        raise UsageError("module iscsi is active, but no iSCSI session was found under "
                         "the dump target")
    return luns


def template_vars(ctx: BuildContext) -> iscsi.IscsiSettings:
    return iscsi.settings(_luns(ctx))


def kernel_modules(ctx: BuildContext) -> list[str]:
    _luns(ctx)
    return list(iscsi.KERNEL_MODULES)
