"""The one object through which mkkdumprd reads the machine it runs on (or builds for).

Everything that looks at /proc, /sys, /etc, /lib/modules or a sysroot goes through a
HostView, so tests hand in a fake tree and cross builds hand in a foreign-arch root.
Paths given to its methods are absolute paths *as the described system sees them*;
symlinks are followed inside the root, never out of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_MAX_SYMLINKS = 40


@dataclass(frozen=True)
class HostView:
    root: Path = Path("/")

    @classmethod
    def live(cls) -> HostView:
        return cls(Path("/"))

    def path(self, p: str | PurePosixPath) -> Path:
        """The real path on this machine of `p` (an absolute path inside the view)."""
        rel = str(p).lstrip("/")
        return self.root / rel if rel else self.root

    def resolve(self, p: str | PurePosixPath) -> PurePosixPath:
        """Canonical absolute path inside the view, with symlinks followed within the root.

        Like realpath(3) run with this root as '/': an absolute link target is taken
        relative to the root, '..' never climbs above it. Missing tails are kept as given.
        """
        return self.resolve_links(p)[0]

    def resolve_links(
        self, p: str | PurePosixPath
    ) -> tuple[PurePosixPath, list[tuple[PurePosixPath, str]]]:
        """resolve(), plus every symlink crossed on the way as (link path, its target),
        in the order the walk met them (an image must carry them to keep paths working)."""
        parts = [x for x in PurePosixPath("/", str(p)).parts[1:]]
        done: list[str] = []
        links: list[tuple[PurePosixPath, str]] = []
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join([*done, name])
            real = self.path(candidate)
            if real.is_symlink():
                if len(links) >= _MAX_SYMLINKS:
                    raise OSError(f"too many levels of symbolic links at {candidate}")
                target = os.readlink(real)
                links.append((PurePosixPath(candidate), target))
                if target.startswith("/"):
                    done = []
                parts = [x for x in PurePosixPath(target).parts if x != "/"] + parts
                continue
            done.append(name)
        return PurePosixPath("/" + "/".join(done)), links

    def exists(self, p: str | PurePosixPath) -> bool:
        return self.path(self.resolve(p)).exists()

    def is_file(self, p: str | PurePosixPath) -> bool:
        return self.path(self.resolve(p)).is_file()

    def is_dir(self, p: str | PurePosixPath) -> bool:
        return self.path(self.resolve(p)).is_dir()

    def is_symlink(self, p: str | PurePosixPath) -> bool:
        return self.path(p).is_symlink()

    def readlink(self, p: str | PurePosixPath) -> str:
        return os.readlink(self.path(p))

    def read_bytes(self, p: str | PurePosixPath) -> bytes:
        return self.path(self.resolve(p)).read_bytes()

    def read_text(self, p: str | PurePosixPath, errors: str = "strict") -> str:
        return self.path(self.resolve(p)).read_text(encoding="utf-8", errors=errors)

    def read_optional(self, p: str | PurePosixPath) -> str | None:
        """Text of `p`, or None when it does not exist or cannot be read (sysfs attrs)."""
        try:
            return self.read_text(p, errors="replace")
        except OSError:
            return None

    def listdir(self, p: str | PurePosixPath) -> list[str]:
        try:
            return sorted(os.listdir(self.path(self.resolve(p))))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def stat(self, p: str | PurePosixPath) -> os.stat_result:
        return self.path(self.resolve(p)).stat()

    def walk_files(self, p: str | PurePosixPath) -> Iterator[PurePosixPath]:
        """Every regular file or symlink below `p`, as view paths, in sorted order."""
        base = self.path(self.resolve(p))
        top = PurePosixPath("/", str(self.resolve(p)))
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(base)
            for name in sorted(filenames):
                yield top / PurePosixPath(*rel.parts) / name if rel.parts else top / name

    def which(self, name: str, search: tuple[str, ...] | None = None) -> PurePosixPath | None:
        """First executable called `name` on the view's PATH (or `search`)."""
        dirs = search or (
            "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
        )
        if "/" in name:
            return PurePosixPath(name) if self.is_file(name) else None
        for d in dirs:
            cand = PurePosixPath(d) / name
            real = self.path(self.resolve(cand))
            if real.is_file() and os.access(real, os.X_OK):
                return cand
        return None
