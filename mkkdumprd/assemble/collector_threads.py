"""Whether the capture script may spread makedumpfile's compression over the CPUs.

The loader chooses how many CPUs the capture kernel brings up (`nr_cpus=`,
loader/capture_cpus.py); the capture script counts the ones online and, when there is more
than one, runs makedumpfile with `--num-threads N` (as Fedora's kdump.sh does since
kdump-utils PR #14). That is only for a makedumpfile that compresses pages with zlib (-c)
into a file: no -E (makedumpfile refuses threads with it), no --split, no thread count of
the user's own. Not for lzo (-l, the default), snappy (-p) or zstd (-z): with lzo, Debian's
makedumpfile 1.7.2 was slower with threads in every measurement (bench/dump.py
--breakdown, 2 vCPUs: 87.8 s against 28.2 s without, both guest CPUs busy the whole time;
earlier rounds 0.90x on the quiet machine, 0.71x loaded); with zlib the threads kept both
CPUs busy for 1.07-1.26x. snappy and zstd are not in Debian's build, so nothing was
measured for them.

glibc dlopen()s libgcc_s the first time a thread exits (pthread_exit unwinds the thread's
stack with it). At the end of a large dump the capture kernel has no memory left to map
it, the dlopen fails and glibc aborts makedumpfile with "libgcc_s.so.1 must be installed
for pthread_exit to work" (bench/dump.py, 2 GiB guest, 384 MiB filled). The script
preloads it (LD_PRELOAD) while the memory is still free, so the dlopen at exit only finds
it loaded.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from mkkdumprd.config.model import KdumpConfig

# The compression --num-threads is added for (zlib); see the docstring for the others.
THREADED = frozenset({"-c"})
# glibc's LIBGCC_S_SO (sysdeps/generic/gnu/lib-names.h on the arches we build for).
LIBGCC_S = "libgcc_s.so.1"


def collector_threads(config: KdumpConfig) -> bool:
    """The capture script adds `--num-threads N` when the capture kernel has N > 1 CPUs
    (zlib collectors only)."""
    argv = config.core_collector
    if not argv or PurePosixPath(argv[0]).name != "makedumpfile":
        return False
    words = set(argv[1:])
    if words & {"-E", "--split", "--num-threads"} or \
            any(w.startswith("--num-threads=") for w in words):
        return False
    return bool(words & THREADED)
