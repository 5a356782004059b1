#!/usr/bin/env python3
"""The README's main job: build a capture image for a real kernel and prove it in a VM crash.

1. takes the real Debian kernel the tests use (linux-image-amd64's package, cached);
2. builds its capture image with `mkkdumprd build` for a local ext4 target;
3. boots that kernel in QEMU (TCG), loads the capture kernel + image with kexec, crashes it
   with sysrq inside the guest; the capture kernel runs the image, which saves the vmcore;
4. copies the vmcore and vmcore-dmesg.txt out of the VM's disk image (debugfs, no mount)
   and prints where they are, their size and the last lines of the crashed kernel's log.

Sets nothing up itself: run dev/setup first. Exit status 0 only if a vmcore arrived and its
log shows the crash; otherwise 1, with the end of the VM console.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.debian_kernel import debian_kernel  # noqa: E402
from tests.vm.harness import disks, vmcore  # noqa: E402
from tests.vm.harness.crash import crash_cycle  # noqa: E402
from tests.vm.harness.qemu import VMError  # noqa: E402


def step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def fail(msg: str, console: Path | None = None) -> int:
    print(f"prove_in_vm: FAILED: {msg}", file=sys.stderr)
    if console is not None and console.exists():
        tail = console.read_text(errors="replace").splitlines()[-40:]
        print(f"--- last lines of the VM console ({console}) ---", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
    return 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out"),
                    help="where the vmcore, its dmesg and the console log go (default ./out)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds the whole VM run may take (default 300)")
    ap.add_argument("--lines", type=int, default=15, help="dmesg lines to show (default 15)")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    step("real Debian kernel (downloaded once, cached in /var/cache/mkkdumprd-tests)")
    kernel = debian_kernel()
    print(f"    {kernel.vmlinuz}")

    with tempfile.TemporaryDirectory(prefix="mkkdumprd-prove-") as tmp:
        work = Path(tmp)
        fs_uuid = str(uuid.uuid4())
        image = out / f"capture-{kernel.kver}.img"
        build = [sys.executable, "-m", "mkkdumprd", "build", "--kver", kernel.kver,
                 "--kmoddir", str(kernel.kmoddir), "--no-hostonly",
                 "--add-drivers", "virtio_pci,virtio_blk,ext4",
                 "--target", f"local:UUID={fs_uuid}:/var/crash", "-o", str(image), "--force"]
        step("mkkdumprd " + " ".join(build[3:]))
        r = subprocess.run(build, cwd=REPO, capture_output=True, text=True)
        if r.returncode != 0 or not image.exists():
            return fail(f"mkkdumprd build exited {r.returncode}:\n{r.stdout}{r.stderr}")
        print(f"    {image} ({image.stat().st_size / 2**20:.1f} MiB)")

        step(f"ext4 dump disk (UUID {fs_uuid}); QEMU/TCG boot, kexec -s -p, sysrq crash")
        disk = disks.make_ext4(work / "disk.img", fs_uuid,
                               content=disks.tree(work / "fs", "var/crash"))
        console = out / "console.log"
        try:
            run = crash_cycle(kernel, image, [disk], work, timeout=args.timeout, log=console)
        except VMError as e:
            return fail(str(e).split("; console tail")[0], console)
        print(f"    VM finished in {run.seconds:.1f} s; console log: {console}")

        dumps = disks.ext4_find_dumps(disk)
        if not dumps:
            return fail("no dump directory under /var/crash on the VM's disk", console)
        src = f"/var/crash/{dumps[-1]}"
        names = {e.name for e in disks.ext4_ls(disk, src)}
        if "vmcore" not in names:
            return fail(f"{src} on the VM's disk holds {sorted(names)}, no vmcore", console)
        dest = out / dumps[-1]
        dest.mkdir(parents=True, exist_ok=True)
        step(f"copying {src} out of the disk image (debugfs)")
        vmc = disks.ext4_dump(disk, f"{src}/vmcore", dest / "vmcore")
        if "vmcore-dmesg.txt" in names:
            disks.ext4_dump(disk, f"{src}/vmcore-dmesg.txt", dest / "vmcore-dmesg.txt")

    try:
        log = vmcore.dump_dmesg(vmc, dest / "vmcore.dmesg-from-makedumpfile.txt")
        vmcore.assert_sysrq_crash(log)
    except AssertionError as e:
        return fail(str(e), console)

    print()
    print(f"vmcore:  {vmc}")
    print(f"size:    {vmc.stat().st_size} bytes ({vmc.stat().st_size / 2**20:.1f} MiB, "
          "makedumpfile -d 31)")
    if (dest / "vmcore-dmesg.txt").exists():
        print(f"dmesg:   {dest / 'vmcore-dmesg.txt'} (saved by the capture image)")
    print(f"total:   {time.monotonic() - t0:.1f} s")
    print("the crash, as the vmcore's kernel log has it:")
    for line in log.splitlines():
        if any(c in line for c in vmcore.SYSRQ_CRASH_LINES):
            print(f"    {line}")
    print(f"last {args.lines} lines of the crashed kernel's log (makedumpfile --dump-dmesg):")
    for line in log.splitlines()[-args.lines:]:
        print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
