"""Smallest crashkernel= that gives a vmcore on aarch64 / ppc64le / riscv64 under QEMU TCG.

Not a test: it prints figures. For each size (largest first) one full cycle runs as in
tests/vm/test_multiarch_*.py: the Debian kernel of the arch from the cached foreign sysroot,
the capture image built by `mkkdumprd build --arch A --sysroot DIR`, loaded through the
kexec_load fallback argv, crash, dump to a virtio ext4 disk. A size passes when the vmcore
(aarch64, ppc64le) or vmcore-dmesg.txt (riscv64: kexec-tools' core headers break
makedumpfile there, see tests/vm/test_multiarch_riscv64.py) lands on the disk. It stops at
the first failing size; beside it, what `mkkdumprd crashkernel recommend` says for the same
image, kernel and RAM.

    .venv/bin/python -m bench.multiarch_crashkernel_min aarch64 96M 80M 64M 48M
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.foreign_sysroot import foreign_sysroot
from tests.vm.harness import disks
from tests.vm.harness.multiarch import build_cross_capture, check_dump, foreign_crash_cycle
from tests.vm.harness.qemu import VMError

REPO = Path(__file__).resolve().parents[1]
MEM = "1G"


def one(arch: str, size: str, work: Path) -> tuple[bool, float, str]:
    s = foreign_sysroot(arch)
    fs_uuid = str(uuid.uuid4())
    image = work / "capture.img"
    if not image.exists():
        build_cross_capture(s, f"local:UUID={fs_uuid}:/var/crash", image)
        (work / "uuid").write_text(fs_uuid)
    fs_uuid = (work / "uuid").read_text()
    run_dir = work / size
    run_dir.mkdir()
    disk = disks.make_ext4(run_dir / "disk.img", fs_uuid,
                           content=disks.tree(run_dir / "fs", "var/crash"))
    t0 = time.monotonic()
    try:
        run = foreign_crash_cycle(s, image, [disk], run_dir, crashkernel=size, timeout=150)
    except VMError as exc:
        last = [x for x in str(exc).splitlines() if x.strip()][-1:]
        return False, time.monotonic() - t0, f"VM: {' '.join(last)[:120]}"
    try:
        if arch == "riscv64":
            [d] = disks.ext4_find_dumps(disk)
            names = {e.name for e in disks.ext4_ls(disk, f"/var/crash/{d}")}
            ok = "vmcore-dmesg.txt" in names
            return ok, run.seconds, f"dump dir {sorted(names)}"
        dump = check_dump(disk, run_dir, s, run.console)
        return True, run.seconds, f"vmcore {dump.size >> 20} MiB, read by {dump.reader}"
    except (AssertionError, ValueError) as exc:
        tail = [x for x in run.console.splitlines() if "Out of memory" in x or "oom" in x]
        return False, run.seconds, (tail[:1] or [str(exc).splitlines()[0]])[0][:120]


def recommend(arch: str, image: Path) -> str:
    s = foreign_sysroot(arch)
    r = subprocess.run([sys.executable, "-m", "mkkdumprd", "crashkernel", "recommend",
                        "--arch", arch, "--mem", MEM, "--image", str(image), "--kernel",
                        str(s.kernel)], capture_output=True, text=True, cwd=REPO)
    lines = [x for x in r.stdout.splitlines() if x.startswith(("recommended", "table"))]
    return "; ".join(" ".join(x.split()) for x in lines) or r.stderr.strip()


def main(argv: list[str]) -> int:
    arch, sizes = argv[0], argv[1:]
    work = Path(tempfile.mkdtemp(prefix=f"mkkdumprd-ckmin-{arch}-"))
    try:
        for size in sizes:
            ok, secs, what = one(arch, size, work)
            print(f"{arch} crashkernel={size:>5} RAM {MEM}: {'ok  ' if ok else 'FAIL'} "
                  f"{secs:5.1f} s  {what}", flush=True)
            if not ok:
                break
        print(f"{arch} recommend: {recommend(arch, work / 'capture.img')}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
