"""Rendering /init and the dump scripts: jinja2 with StrictUndefined and shell quoting.

This is the one channel from Python to the capture shell: every value a script needs
(configuration, paths in the image, the network, nfs and ssh settings that hooks return as
frozen dataclasses) enters the template context as `Tainted`. Printing a Tainted value
without the `shq` (one word) or `shargs` (a list of words) filter is a render error, so a
path with spaces, quotes, `$(...)` or a newline can neither break the script nor run
anything: the templates cannot forget to quote. Autoescape is off (this is shell, not HTML)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path

import jinja2

from mkkdumprd.assemble import cache
from mkkdumprd.errors import ShippedDataError
from mkkdumprd.quoting import shell_word
from mkkdumprd.resources import data_dir


class Tainted(str):
    """A string from the configuration: must be quoted before it reaches a script."""

    __slots__ = ()


class TemplateRenderError(ShippedDataError):
    """A template that cannot be rendered (missing variable, unquoted value, syntax)."""


def taint(value: object) -> object:
    """Mark every string inside `value` (recursively through lists, tuples, dicts and
    dataclass instances, which become dicts of their fields)."""
    if isinstance(value, str):
        return Tainted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: taint(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return type(value)(taint(v) for v in value)
    if isinstance(value, dict):
        return {k: taint(v) for k, v in value.items()}
    return value


def shq(value: object) -> str:
    """One shell word, whatever `value` holds."""
    if value is None:
        raise TemplateRenderError("shq: cannot quote None (a missing value)")
    # str() of a StrictUndefined raises the UndefinedError that names the variable.
    return shell_word(str(value))


def shargs(values: Iterable[object]) -> str:
    """Shell words for each element, separated by spaces."""
    if isinstance(values, str):
        raise TemplateRenderError("shargs: expected a list of words, got a string")
    return " ".join(shq(v) for v in values)


def _finalize(value: object) -> object:
    if isinstance(value, Tainted):
        raise TemplateRenderError(
            f"a configuration value ({str(value)[:40]!r}) is printed without `| shq`"
        )
    if isinstance(value, (list, tuple, dict)):
        raise TemplateRenderError("a list or table is printed as-is; use `| shargs`")
    return value


# The environment's options: compiled templates depend on them, so they name the compiled
# files too (TemplateCache).
_OPTIONS: dict[str, object] = {
    "autoescape": False,
    "keep_trailing_newline": True,
    "trim_blocks": True,
    "lstrip_blocks": True,
}


def environment(search: Iterable[Path],
                bytecode_cache: jinja2.BytecodeCache | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        bytecode_cache=bytecode_cache,
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        **_OPTIONS,  # type: ignore[arg-type]
    )
    env.filters["shq"] = shq
    env.filters["shargs"] = shargs
    return env


def render(env: jinja2.Environment, name: str, context: Mapping[str, object]) -> str:
    where = name  # the template's file once it is found
    try:
        template = env.get_template(name)
        where = template.filename or name
        return template.render(dict(context))
    except TemplateRenderError as exc:
        raise TemplateRenderError(f"template {where}: {exc}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateRenderError(f"template {name}: not found ({exc})") from None
    except jinja2.UndefinedError as exc:
        raise TemplateRenderError(f"template {where}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateRenderError(
            f"{exc.filename or name}:{exc.lineno}: template syntax error: {exc.message}"
        ) from None


class TemplateCache(jinja2.BytecodeCache):
    """jinja2's compiled templates; the shipped ones kept the way Python keeps its bytecode.

    A cold build (an empty build cache) spent ~60 ms compiling the ten templates it
    renders. What a shipped template compiles to depends only on its source, jinja2, Python
    and the environment's options, so it is kept beside the package, in the `__pycache__`
    folder of the shipped templates (or under `sys.pycache_prefix`), by Python's rules: not
    written when `sys.dont_write_bytecode` (PYTHONDONTWRITEBYTECODE) is set, and a folder
    that cannot be written (an installed package, a non-root user) is only read. Other
    templates (`--templates-dir`, tests), and shipped ones that could not be written there,
    go to the build cache (assemble/cache.py) when it is on. A compiled file is used only
    when its source checksum matches (jinja2 checks it) and it is owned by root or the
    caller and not writable by others: it is code, trusted as the package's `.pyc` files
    are. Handed out by the run's BuildCache (assemble/cached.py).
    """

    def __init__(self, folder: Path | None = None, *, use_build_cache: bool = True) -> None:
        self._folder = compiled_folder() if folder is None else folder
        self._use_build_cache = use_build_cache
        self._shipped: set[str] = set()     # bucket keys of templates in the package

    def get_bucket(self, environment: jinja2.Environment, name: str, filename: str | None,
                   source: str) -> jinja2.bccache.Bucket:
        bucket = jinja2.bccache.Bucket(environment, self.get_cache_key(name, filename),
                                       self.get_source_checksum(source))
        if filename is not None and filename.startswith(_SHIPPED):
            self._shipped.add(bucket.key)
        self.load_bytecode(bucket)
        return bucket

    def _path(self, bucket: jinja2.bccache.Bucket) -> Path:
        return self._folder / f"{bucket.key}.{_TAG}.jinja"

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self._shipped:
            with suppress(OSError), open(self._path(bucket), "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022:
                    bucket.load_bytecode(f)
                    if bucket.code is not None:
                        return
        if self._use_build_cache:
            data = cache.load("jinja", bucket.key, bucket.checksum)
            if isinstance(data, bytes):
                bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.code is None:
            return
        data = bucket.bytecode_to_string()
        if bucket.key in self._shipped and not sys.dont_write_bytecode:
            from mkkdumprd.atomic_file import atomic_write

            try:
                self._folder.mkdir(parents=True, exist_ok=True)
                atomic_write(self._path(bucket), data, 0o644, durable=False)
                return
            except OSError:  # a read-only package: the build cache keeps it instead
                pass
        if self._use_build_cache:
            cache.store("jinja", bucket.key, bucket.checksum, data)


def compiled_folder() -> Path:
    """Where Python would keep the bytecode of a module in the shipped templates folder."""
    from importlib.util import cache_from_source

    return Path(cache_from_source(str(data_dir("templates") / "_.py"))).parent


# The package's data folder (shipped templates: data/templates and data/modules.d/*).
_SHIPPED = str(data_dir("templates").parent) + os.sep
# What the compiled code depends on besides the source: jinja2's and Python's versions and
# the environment's options.
_TAG = hashlib.sha256(repr((jinja2.__version__, sys.implementation.cache_tag,
                            sorted(_OPTIONS.items()), _finalize.__qualname__)).encode()
                      ).hexdigest()[:16]
