"""The kernel command line in a root's boot configuration: one named set of words (an
`Owner`: crashkernel=, the ramoops region) written, replaced or removed through grubby,
s390x zipl.conf, a /etc/default/grub.d drop-in or /etc/kernel/cmdline (writer.py)."""
