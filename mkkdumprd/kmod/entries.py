"""Module files and the load list, as image entries.

Modules go in decompressed (Entry.codec tells the writer to decode them): busybox insmod
loads plain ELF only, and the whole image is compressed once by the outer zstd, which
does better than per-file xz. The load list is what the generated /init insmods, in order.
"""

from __future__ import annotations

from mkkdumprd.image.spec import Entry, data_entry, file_entry
from mkkdumprd.kmod.closure import ModuleClosure
from mkkdumprd.kmod.names import strip_compression

LOAD_LIST = "modules.load"


def module_entries(closure: ModuleClosure) -> list[Entry]:
    base = f"/lib/modules/{closure.kver}"
    entries: list[Entry] = []
    lines: list[str] = []
    for m in closure.modules:
        rel = strip_compression(m.relpath)
        lines.append(rel)
        entries.append(file_entry(f"{base}/{rel}", m.path, f"kernel module {m.name}",
                                  mode=0o644, codec=m.codec))
    entries.append(data_entry(f"{base}/{LOAD_LIST}", "".join(f"{x}\n" for x in lines),
                              "kernel modules to load at boot, in order"))
    return entries
