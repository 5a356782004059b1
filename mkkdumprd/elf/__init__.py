"""ELF shared-library closure, computed the way glibc's ld.so would, without running ldd.

objects   reads one ELF file (class, machine, PT_INTERP, dynamic section, .note.dlopen)
ldcache   parses /etc/ld.so.cache (glibc new format, old+new compat format, old format)
ldconf    parses /etc/ld.so.conf with its include globs
platform  per-machine loader facts: cache flags, $LIB, $PLATFORM, default dirs, hwcaps
closure   the loader's search rules (RPATH/RUNPATH/$ORIGIN/cache/defaults), breadth-first
install   turns binaries and their closures into image entries, symlink chains included
"""
