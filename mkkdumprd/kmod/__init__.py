"""Kernel modules for the capture image, resolved as kmod does, without calling kmod.

index: ModuleIndex (depmod's files, or every module's .modinfo when they are stale);
closure: resolve_modules() -> ModuleClosure (deps, softdeps, aliases, load order);
firmware: firmware_entries(); image: module_entries(); discovery: host-only drivers.
"""

from mkkdumprd.kmod.closure import KModule, ModuleClosure, resolve_modules
from mkkdumprd.kmod.index import ModuleDirMissing, ModuleIndex, ModuleNotFound

__all__ = [
    "KModule", "ModuleClosure", "ModuleDirMissing", "ModuleIndex", "ModuleNotFound",
    "resolve_modules",
]
