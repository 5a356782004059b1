"""Facts about the machine an image is for that activate modules.d entries
(`when = { machine = [...] }`), worked out once per build.

Only host-only builds know the machine; an image for another machine has no facts.
"""

from __future__ import annotations

from mkkdumprd.host import Host

# fact → what it means (modules.d/README.md lists them)
MACHINE_FACTS = {
    "watchdog": "a hardware watchdog is running (mkkdumprd/watchdog.py)",
}


def machine_facts(machine: Host, hostonly: bool) -> frozenset[str]:
    if not hostonly:
        return frozenset()
    from mkkdumprd import watchdog

    facts: set[str] = set()
    if watchdog.running(machine):
        facts.add("watchdog")
    return frozenset(facts)
