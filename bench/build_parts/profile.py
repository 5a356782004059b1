"""Where a build's time goes: `python -X importtime` and cProfile of one cold and one
up-to-date `mkkdumprd build`, summarised for bench/build.py.

importtime's figures are inflated by its own bookkeeping (read them against each other,
not against the wall times of the table); cProfile runs the build in-process, so its
total is the build without Python's start-up.
"""

from __future__ import annotations

import os
import pstats
import shutil
import subprocess
import sys
from pathlib import Path

# What a build does not need to import, by path it takes. The up-to-date path reads the
# manifest and hashes inputs: no template engine, no ELF parser, no cpio writer, no other
# command group. Any build: no test libraries.
NOT_FOR_UP_TO_DATE = ("jinja2", "elftools", "libarchive", "mkkdumprd.assemble.builder",
                      "mkkdumprd.kmod", "mkkdumprd.elf", "mkkdumprd.network",
                      "mkkdumprd.storage", "mkkdumprd.image.writer", "tomllib",
                      "importlib.resources", "traceback", "socket", "subprocess")
# The fast path replays a stamp before the command line exists: no click, no configuration
# parser, no manifest reader, no hashing.
NOT_FOR_FAST_PATH = ("click", "mkkdumprd.cli", "mkkdumprd.config", "mkkdumprd.assemble",
                     "mkkdumprd.image", "hashlib", "zstandard", "json")
NOT_FOR_ANY_BUILD = ("hypothesis", "pytest", "mkkdumprd.vmtest", "mkkdumprd.loader",
                     "mkkdumprd.crashkernel.apply", "mkkdumprd.records.pstore",
                     "mkkdumprd.lifecycle.service")
OTHER_COMMANDS = ("config_cmd", "crashkernel_cmd", "deps_cmd", "integration_cmd",
                  "load_cmd", "ls_cmd", "propagate_cmd", "records_cmd", "service_cmd",
                  "test_cmd")


def _importtime(cmd: list[str], env: dict[str, str]) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, dotted name with its nesting) per import of one run."""
    py, rest = cmd[0], cmd[1:]
    p = subprocess.run([py, "-X", "importtime", *rest], env=env, capture_output=True,
                       text=True, check=True)
    rows: list[tuple[int, int, str]] = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        rows.append((int(self_us), int(cum_us), name.rstrip()))
    return rows


def _import_summary(label: str, rows: list[tuple[int, int, str]],
                    unneeded: tuple[str, ...]) -> dict[str, object]:
    total = sum(c for _, c, n in rows if not n.startswith("  ") and n.strip())
    by_pkg: dict[str, int] = {}
    names = [n.strip() for _, _, n in rows]
    for s, _, n in rows:
        root = n.strip().split(".")[0]
        key = "mkkdumprd." + n.strip().split(".")[1] if root == "mkkdumprd" and "." in \
            n.strip() else root
        by_pkg[key] = by_pkg.get(key, 0) + s
    top = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:12]
    bad = sorted({u for u in unneeded for n in names if n == u or n.startswith(u + ".")})
    bad += [f"mkkdumprd.cli.{c}" for c in OTHER_COMMANDS if f"mkkdumprd.cli.{c}" in names]
    print(f"  {label}: {len(rows)} modules imported, {total / 1000:.0f} ms under importtime "
          f"(inflated by its bookkeeping)")
    print("    by package (self time): " +
          ", ".join(f"{k} {v / 1000:.1f}" for k, v in top) + " ms")
    print(f"    imported but not needed on this path: {', '.join(bad) or 'none'}")
    return {"modules": len(rows), "import_ms": total / 1000,
            "by_package_ms": {k: v / 1000 for k, v in top}, "unneeded": bad}


def _cprofile(cmd: list[str], env: dict[str, str], out: Path) -> pstats.Stats:
    py, rest = cmd[0], cmd[1:]
    subprocess.run([py, "-m", "cProfile", "-o", str(out), *rest], env=env,
                   capture_output=True, check=True)
    return pstats.Stats(str(out))


def _profile_summary(label: str, st: pstats.Stats, n: int = 12) -> dict[str, object]:
    raw = st.stats  # type: ignore[attr-defined]
    total = st.total_tt  # type: ignore[attr-defined]
    # cProfile counts a recursive function's cumulative time once, at its outermost call,
    # so _find_and_load's is the whole import time of the run.
    top_imports = sum(ct for (f, _, fn), (_, _, _, ct, _) in raw.items()
                      if fn == "_find_and_load" and "importlib._bootstrap" in f)
    ours = [(ct, tt, f"{Path(f).name}:{ln}({fn})") for (f, ln, fn), (_, _, tt, ct, _)
            in raw.items() if "/mkkdumprd/" in f and "/data/" not in f]
    ours.sort(reverse=True)
    own = sorted(((tt, ct, f"{Path(f).name}:{ln}({fn})") for (f, ln, fn), (_, _, tt, ct, _)
                  in raw.items()), reverse=True)
    print(f"  {label}: {total:.3f} s in-process under cProfile (its overhead included), "
          f"imports about {min(top_imports, total):.3f} s of it")
    print("    cumulative, mkkdumprd functions:")
    for ct, _tt, name in ours[:n]:
        print(f"      {ct:7.3f} s  {name}")
    print("    own time, any function:")
    for tt, _ct, name in own[:8]:
        print(f"      {tt:7.3f} s  {name}")
    return {"total_s": total, "imports_s": top_imports,
            "top_cumulative": [(name, ct) for ct, _, name in ours[:n]],
            "top_own": [(name, tt) for tt, _, name in own[:8]]}


def report(cold_cmd: list[str], cold_env: dict[str, str], work: Path) -> dict[str, object]:
    """Prints the breakdown of one cold (empty build cache, --force) and one up-to-date build
    of `cold_cmd` (bench/build.py's cold case); returns the figures."""
    cache = Path(cold_env["MKKDUMPRD_CACHE_DIR"])
    utd_cmd = [a for a in cold_cmd if a != "--force"]
    print("\nwhere the time goes (target of the first case):")
    out: dict[str, object] = {}
    shutil.rmtree(cache, ignore_errors=True)
    out["cold_imports"] = _import_summary(
        "cold build imports", _importtime(cold_cmd, cold_env), NOT_FOR_ANY_BUILD)
    out["up_to_date_imports"] = _import_summary(
        "up-to-date imports", _importtime(utd_cmd, cold_env),
        NOT_FOR_ANY_BUILD + NOT_FOR_UP_TO_DATE)
    # The run above wrote the stamp (unless the image was racily new: one more run does);
    # the next one replays it (mkkdumprd/uptodate/stamp.py).
    subprocess.run(utd_cmd, env=cold_env, capture_output=True, check=True)
    out["fast_path_imports"] = _import_summary(
        "up-to-date imports, stamp replayed", _importtime(utd_cmd, cold_env),
        NOT_FOR_ANY_BUILD + NOT_FOR_UP_TO_DATE + NOT_FOR_FAST_PATH)
    shutil.rmtree(cache, ignore_errors=True)
    out["cold_profile"] = _profile_summary(
        "cold build", _cprofile(cold_cmd, cold_env, work / "cold.prof"))
    out["up_to_date_profile"] = _profile_summary(
        "up-to-date", _cprofile(utd_cmd, cold_env, work / "utd.prof"))
    shutil.rmtree(cache, ignore_errors=True)
    print(f"  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    return out
