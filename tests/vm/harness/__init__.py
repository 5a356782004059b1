"""QEMU harness for the VM tests: boot real kernels under TCG, crash them, read the dumps back.

qemu          the product's QEMU runner (mkkdumprd/vmtest/qemu.py), TCG
images        the product's initramfs pieces (vmtest/guest_files.py) and modules in load order
first_stage   the first-kernel initramfs that loads the capture kernel with kexec-tools
python_guest  the product's loader in the guest (vmtest/guest_python.py, first_stage.py)
disks         ext4 / raw disk images and reading results back without mounting
vmcore        checking a vmcore's kernel log (vmtest/vmcore_check.py)
"""
