"""Validators for the values that kdump.conf and `--target` share.

Each check returns None when the value is acceptable, else one sentence that says what is
wrong and which forms are valid, so the file parser and the `--target` parser give the same
answer for the same value.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

_HEX_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
# An MBR disk has no GUIDs: its PARTUUID is the disk signature plus the partition number.
_MBR_PARTUUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{2}")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*\$?")
_MODULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")

DEVICE_FORMS = "a /dev/... path, UUID=<uuid>, LABEL=<label> or PARTUUID=<partuuid>"
NFS_FORM = "HOST:/EXPORT (an IPv6 address in brackets: [2001:db8::1]:/export)"
SSH_FORM = "USER@HOST (an IPv6 address without brackets: user@2001:db8::1)"


def bad_char(text: str) -> str | None:
    """Name the first character that must not appear in a value, or None."""
    for ch in text:
        if ch == "\t":
            continue
        cat = unicodedata.category(ch)
        if ch == "\x00":
            return "a NUL byte"
        if "\udc80" <= ch <= "\udcff":
            return "bytes that are not valid UTF-8"
        if cat in ("Cc", "Cs", "Zl", "Zp"):
            return f"the control character U+{ord(ch):04X}"
    return None


def printable(text: str) -> str:
    """`text` safe to print: bytes that were not UTF-8 (surrogate escapes) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_device(dev: str) -> str | None:
    for tag in ("UUID=", "PARTUUID=", "LABEL="):
        if dev.startswith(tag):
            rest = dev[len(tag):]
            if tag == "LABEL=":
                if not rest or rest != rest.strip():
                    return (f"{dev!r} has an empty label or spaces around it; "
                            "write LABEL=<label>")
                return None
            if _HEX_UUID.fullmatch(rest) or (tag == "PARTUUID=" and _MBR_PARTUUID.fullmatch(rest)):
                return None
            form = ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx or, on an MBR disk, xxxxxxxx-nn"
                    if tag == "PARTUUID=" else "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
            return f"{dev!r} is not a valid {tag[:-1]}; write {tag}{form} (hex digits)"
    if dev.startswith("/dev/") and len(dev) > len("/dev/"):
        if any(c.isspace() for c in dev):
            return f"device path {dev!r} contains whitespace; use UUID= or LABEL= instead"
        return None
    return f"{dev!r} is not a device; write {DEVICE_FORMS}"


def check_host(host: str) -> str | None:
    """A DNS name or an IP address (IPv6 without brackets)."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not a valid IPv6 address"
        return None
    if _DOTTED_NUMBERS.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not a valid IPv4 address"
        return None
    if len(host) <= 253 and _HOSTNAME.fullmatch(host):
        return None
    return f"{host!r} is not a valid host name or IP address"


def split_nfs(value: str) -> tuple[str, str] | str:
    """(host, export) from HOST:/EXPORT, else the error sentence."""
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            return f"{value!r} has '[' without ']'; write {NFS_FORM}"
        host, after = value[1:close], value[close + 1:]
        if ":" not in host:
            return f"{value!r}: only an IPv6 address goes in brackets; write {NFS_FORM}"
        if not after.startswith(":"):
            return f"{value!r} has no ':/EXPORT' after the server; write {NFS_FORM}"
        export = after[1:]
    else:
        host, sep, export = value.partition(":")
        if not sep:
            return f"{value!r} has no export; write {NFS_FORM}"
        if export and not export.startswith("/") and ":" in export:
            return f"{value!r}: put an IPv6 server address in brackets; write {NFS_FORM}"
    if not host:
        return f"{value!r} has no server; write {NFS_FORM}"
    err = check_host(host)
    if err:
        return f"{err}; write {NFS_FORM}"
    if not export.startswith("/"):
        return f"the export in {value!r} must be an absolute path; write {NFS_FORM}"
    if any(c.isspace() for c in export):
        return f"the export in {value!r} contains whitespace; write {NFS_FORM}"
    return host, export


def split_ssh(value: str) -> tuple[str, str] | str:
    """(user, host) from USER@HOST, else the error sentence."""
    user, sep, host = value.partition("@")
    if not sep or not user:
        return f"{value!r} has no user; write {SSH_FORM}"
    if not _USER.fullmatch(user):
        return f"{user!r} is not a valid user name; write {SSH_FORM}"
    if host.startswith("[") and host.endswith("]"):
        return (f"write the IPv6 address in {value!r} without brackets, as Fedora does: "
                f"{user}@{host[1:-1]}")
    if not host:
        return f"{value!r} has no host; write {SSH_FORM}"
    err = check_host(host)
    if err:
        return f"{err}; write {SSH_FORM}"
    return user, host


def check_module(name: str) -> str | None:
    if _MODULE.fullmatch(name):
        return None
    return (f"{name!r} is not a kernel module name (letters, digits, '_', '-'; "
            "no path, no .ko suffix needed)")


def check_abs_path(what: str, path: str, example: str) -> str | None:
    if not path.startswith("/"):
        return f"{what} must be an absolute path, not {path!r}; e.g. {example}"
    return None



def check_confined_path(what: str, path: str) -> str | None:
    """A dump `path` is relative to the target's root and must stay below it: no '..'
    component (the capture kernel would resolve it above the target's mount point)."""
    if ".." in path.split("/"):
        return (f"{what} {path!r} has a '..' component, which leads out of the dump "
                "target (the dump would land in the capture kernel's memory); write the "
                "path without '..'")
    return None
