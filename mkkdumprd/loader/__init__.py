"""The capture-kernel loader: kexec_file_load(2) through ctypes, standard library only.

Nothing in this package imports click, jinja2 or any non-stdlib module at import time, so a
guest with a bare python3 can run `python3 -m mkkdumprd.loader load|unload|status`.
"""
