"""Variants of a real module tree for the kmod parity tests and bench/kmod.py.

- `without_index(kernel)`: the same modules (hard links) with only the files the kernel
  package ships (modules.builtin, modules.builtin.modinfo, modules.order), as an
  extracted package looks before depmod runs;
- `compressed(kernel, "xz"|"zst")`: every module compressed like the kernel's
  CONFIG_MODULE_COMPRESS_* does, then `depmod -b` run on it;
- `modprobe_show_depends(...)`: kmod's own answer for many names (the test oracle),
  run in a thread pool and cached as JSON keyed by kernel, tree and configuration.
All are cached under the test cache directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import zstandard

from tests.support.debian_kernel import CACHE, Kernel

PACKAGE_FILES = ("modules.builtin", "modules.builtin.modinfo", "modules.order")


def _locked(name: str) -> int:
    CACHE.mkdir(parents=True, exist_ok=True)
    fd = os.open(CACHE / f".lock-{name}", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def without_index(kernel: Kernel) -> Kernel:
    root = CACHE / "kernels-noindex" / kernel.kver
    fd = _locked("noindex")
    try:
        if not (root / ".ready").exists():
            shutil.rmtree(root, ignore_errors=True)
            src = kernel.kmoddir
            dst = root / "lib" / "modules" / kernel.kver
            for dirpath, _dirs, files in os.walk(src):
                rel = Path(dirpath).relative_to(src)
                (dst / rel).mkdir(parents=True, exist_ok=True)
                for f in files:
                    if rel == Path(".") and f.startswith("modules.") and f not in PACKAGE_FILES:
                        continue
                    os.link(Path(dirpath) / f, dst / rel / f)
            (root / ".ready").touch()
    finally:
        os.close(fd)
    return Kernel(root=root, kver=kernel.kver)


def _compress_one(args: tuple[str, str, str]) -> None:
    src, dst, codec = args
    data = Path(src).read_bytes()
    if codec == "xz":
        # As the kernel's Makefile.modinst: xz --check=crc32 --lzma2=dict=1MiB.
        out = lzma.compress(data, check=lzma.CHECK_CRC32, filters=[
            {"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": 1 << 20}])
    else:
        out = zstandard.ZstdCompressor(level=3).compress(data)
    Path(dst).write_bytes(out)


def compressed(kernel: Kernel, codec: str) -> Kernel:
    root = CACHE / f"kernels-{codec}" / kernel.kver
    fd = _locked(codec)
    try:
        if not (root / ".ready").exists():
            shutil.rmtree(root, ignore_errors=True)
            src = kernel.kmoddir
            dst = root / "lib" / "modules" / kernel.kver
            jobs: list[tuple[str, str, str]] = []
            for dirpath, _dirs, files in os.walk(src):
                rel = Path(dirpath).relative_to(src)
                (dst / rel).mkdir(parents=True, exist_ok=True)
                for f in files:
                    if f.endswith(".ko"):
                        jobs.append((str(Path(dirpath) / f), str(dst / rel / f) + f".{codec}",
                                     codec))
                    elif rel == Path(".") and f in PACKAGE_FILES:
                        shutil.copy2(Path(dirpath) / f, dst / f)
            with ProcessPoolExecutor() as pool:
                list(pool.map(_compress_one, jobs, chunksize=32))
            subprocess.run(["depmod", "-b", str(root), kernel.kver], check=True,
                           capture_output=True)
            (root / ".ready").touch()
    finally:
        os.close(fd)
    return Kernel(root=root, kver=kernel.kver)


def _show_depends(root: Path, kver: str, confdir: Path, name: str) -> list[str] | None:
    """kmod's insmod lines for `name` as paths relative to the module dir; None when
    modprobe says the name is not found."""
    p = subprocess.run(["modprobe", "-d", str(root), "-S", kver, "-C", str(confdir),
                        "--show-depends", name], capture_output=True, text=True)
    prefix = f"{root}/lib/modules/{kver}/"
    paths = [line.split()[1].removeprefix(prefix) for line in p.stdout.splitlines()
             if line.startswith("insmod ")]
    if p.returncode != 0 and not paths and "not found" in p.stderr:
        return None
    return paths


def modprobe_show_depends(kernel: Kernel, names: Sequence[str], confdir: Path,
                          tag: str) -> dict[str, list[str] | None]:
    conf = b"".join(p.name.encode() + p.read_bytes() for p in sorted(confdir.glob("*.conf")))
    kmod = subprocess.run(["modprobe", "--version"], capture_output=True,
                          check=True).stdout
    key = hashlib.sha256(b"\0".join([kernel.kver.encode(), tag.encode(), conf, kmod,
                                     "\n".join(names).encode()])).hexdigest()[:16]
    cache = CACHE / "kmod-oracle" / f"{kernel.kver}-{tag}-{key}.json"
    if cache.exists():
        data: dict[str, list[str] | None] = json.loads(cache.read_text())
        return data
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda n: _show_depends(kernel.root, kernel.kver, confdir, n),
                                names))
    out = dict(zip(names, results, strict=True))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.rename(cache)
    return out
