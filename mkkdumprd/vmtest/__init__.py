"""`mkkdumprd test --vm`: prove a capture image by crashing a kernel in QEMU, not the machine.

qemu          QEMU's command line (disk buses, KVM or TCG) and a run with its console log
guest_files   busybox, host binaries and /init as entries of a guest initramfs
guest_python  this machine's python3, the stdlib the loader imports (loader_trace.py), the
              loader's sources
first_stage   the first-kernel initramfs: load with mkkdumprd's loader, check, crash
scratch       scratch disks (same fs type and UUID/label) and reading them back
servers       nfs-ganesha / sshd stand-ins on 127.0.0.1
targets       the stand-in for the image's resolved target
sizing        the guest's crashkernel=, from `crashkernel recommend`
run           prove(): one boot, watched and judged
report        the failed step from the console; text and JSON
measure       --measure-crashkernel: the smallest reservation that still dumps
vmcore_check  the crash in the vmcore's log (makedumpfile --dump-dmesg)
"""
