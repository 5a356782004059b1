"""What a crash left behind, read after the reboot: the capture image's outcome record
(outcome.py), the pstore records (pstore.py) and the crash directories that hold both with
the vmcore (crashes.py)."""
