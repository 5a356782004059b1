"""emergency: the settings of the error handler (kdump_emergency's path in the image).

The programs themselves (kdump_emergency and the executables in /etc/kdump/emergency.d) are
copied by the kdump module, with kdump_pre's checks; this module only runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mkkdumprd.assemble.hooks import BuildContext


@dataclass(frozen=True)
class _EmergencySettings:
    program: str        # kdump_emergency ("" when not set)


def template_vars(ctx: BuildContext) -> _EmergencySettings:
    return _EmergencySettings(program=ctx.config.kdump_emergency or "")
