"""Where a cold `mkkdumprd build` spends its wall time, without a profiler, for bench/build.py.

Three parts that add up to the process: Python's start-up (`python -c pass`), the imports
(every module a build imports, imported alone in a fresh process, minus the start-up) and
the build's own steps, timed in-process after those modules were imported (so a step's
figure is its work, not the first import of what it uses; the modules.d hooks files, loaded
by path, are still loaded inside the hooks step). "exit" is the rest of the process: the
interpreter's shutdown after main() returned. The module index is loaded in a thread while
the plan runs (assemble/cached.py), so "module index" is only the wait for it. Medians of
`reps` runs, each with an empty build cache.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

# Runs one build in-process with its modules imported first; prints the timings as JSON.
# The wrapped functions are looked up through their modules at call time, so patching the
# module attributes times every call.
DRIVER = textwrap.dedent("""\
    import importlib, json, sys, time
    t0 = time.perf_counter()
    args = json.loads(sys.argv[1])
    for name in args["modules"]:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    t1 = time.perf_counter()
    spent = {}

    def wrap(owner, attr, label):
        f = getattr(owner, attr)

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
        setattr(owner, attr, timed)

    from mkkdumprd.assemble import builder, cached, manifest, rebuild_policy
    from mkkdumprd.image import writer
    from mkkdumprd.cli import main
    wrap(rebuild_policy, "_decide", "decide (rebuild policy)")
    wrap(builder, "plan_image", "plan")
    wrap(builder, "collect_from_host", "collect (all)")
    wrap(cached.BuildCache, "module_index", "  module index (wait)")
    wrap(builder, "_declared", "  declared files, binaries")
    wrap(builder, "_run_hooks", "  hooks")
    wrap(builder, "_binary_entries", "  ELF closure")
    wrap(builder, "_kernel_modules", "  kernel modules")
    wrap(builder, "finish_spec", "finish (all)")
    wrap(builder, "_template_entries", "  templates")
    wrap(manifest, "build_manifest", "  manifest (digests)")
    wrap(writer, "write_image", "write (cpio + zstd)")
    wrap(cached.BuildCache, "save", "store the build cache (a thread, during the write)")
    sys.argv = ["mkkdumprd", *args["argv"]]
    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    t2 = time.perf_counter()
    print(json.dumps({"imports_inprocess": t1 - t0, "main": t2 - t1, "steps": spent}))
""")

MODULES = textwrap.dedent("""\
    import atexit, json, sys
    atexit.register(lambda: print(json.dumps(sorted(
        n for n in sys.modules if not n.startswith("mkkdumprd_modules_d")))))
    sys.argv = ["mkkdumprd", *json.loads(sys.argv[1])]
    from mkkdumprd.cli import main
    main()
""")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, p.stdout


def report(cold_cmd: list[str], cold_env: dict[str, str], reps: int = 5) -> dict[str, object]:
    """Prints the breakdown of `cold_cmd` (`python -m mkkdumprd build ... --force`)."""
    py, argv = cold_cmd[0], cold_cmd[3:]
    cache = Path(cold_env["MKKDUMPRD_CACHE_DIR"])
    shutil.rmtree(cache, ignore_errors=True)
    _, out = _run([py, "-c", MODULES, json.dumps(argv)], cold_env)
    modules = [m for m in json.loads(out.strip().splitlines()[-1])
               if m not in ("__main__", "__mp_main__")]  # (the hooks are loaded by path)
    stmt = (f"import importlib\nfor n in {modules!r}:\n    try:\n"
            "        importlib.import_module(n)\n    except Exception:\n        pass\n")
    start, imports, process, exits = [], [], [], []
    steps: dict[str, list[float]] = {}
    for _ in range(reps):
        start.append(_run([py, "-c", "pass"], cold_env)[0])
        imports.append(_run([py, "-c", stmt], cold_env)[0] - start[-1])
        shutil.rmtree(cache, ignore_errors=True)
        process.append(_run(cold_cmd, cold_env)[0])
        shutil.rmtree(cache, ignore_errors=True)
        wall, out = _run([py, "-c", DRIVER, json.dumps({"modules": modules, "argv": argv})],
                         cold_env)
        res = json.loads(out.strip().splitlines()[-1])
        exits.append(wall - start[-1] - res["imports_inprocess"] - res["main"])
        steps.setdefault("build (main(), all)", []).append(res["main"])
        for k, v in res["steps"].items():
            steps.setdefault(k, []).append(v)
    shutil.rmtree(cache, ignore_errors=True)
    med = statistics.median
    main_med = med(steps["build (main(), all)"])
    named = sum(med(v) for k, v in steps.items() if not k.startswith("  ")
                and k != "build (main(), all)" and "(a thread" not in k)
    rows = [("python start-up (python -c pass)", med(start)),
            (f"imports ({len(modules)} modules, alone, minus start-up)", med(imports)),
            *((k, med(v)) for k, v in steps.items()),
            ("  rest of main() (CLI, request, config, arch)", main_med - named),
            ("exit (interpreter shutdown)", med(exits))]
    print(f"\ncold build by step, wall, median of {reps} (no profiler; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{os.cpu_count()} CPUs):")
    for name, value in rows:
        print(f"  {value * 1000:7.1f} ms  {name}")
    total = med(start) + med(imports) + main_med + med(exits)
    print(f"  {total * 1000:7.1f} ms  sum of start-up, imports, build and exit; the process "
          f"itself took {med(process) * 1000:.1f} ms (median, same runs)")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"reps": reps, "modules": len(modules), "rows": {k: v for k, v in rows},
            "process_s": med(process), "children_cpu_s": ru.ru_utime + ru.ru_stime}


if __name__ == "__main__":  # python bench/build_parts/steps.py -- CMD...: one report
    report(sys.argv[2:], dict(os.environ))
