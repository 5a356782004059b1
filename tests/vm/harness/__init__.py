"""QEMU harness for the VM tests: boot real kernels under TCG, crash them, read the dumps back.

qemu      run qemu-system-x86_64 with the serial console streamed to a log file
images    write an ImageSpec to an initramfs (the product's writer) and common entries
first_stage   the first-kernel initramfs that loads the capture kernel and crashes
disks     ext4 / raw disk images and reading results back without mounting
vmcore    checking a vmcore's kernel log
"""
