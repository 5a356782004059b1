"""Rendering /init and the dump scripts: jinja2 with StrictUndefined and shell quoting.

This is the one channel from Python to the capture shell: every value a script needs
(configuration, paths in the image, the network, nfs and ssh settings that hooks return as
frozen dataclasses) enters the template context as `Tainted`. Printing a Tainted value
without the `shq` (one word) or `shargs` (a list of words) filter is a render error, so a
path with spaces, quotes, `$(...)` or a newline can neither break the script nor run
anything: the templates cannot forget to quote. Autoescape is off (this is shell, not HTML)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2

from mkkdumprd.assemble import cache
from mkkdumprd.errors import ShippedDataError
from mkkdumprd.quoting import shell_word


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


def environment(search: Iterable[Path],
                bytecode_cache: jinja2.BytecodeCache | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        bytecode_cache=bytecode_cache,
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
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
    """jinja2's compiled templates in the build cache (atomic, versioned, checked), handed
    out by the run's BuildCache (assemble/cached.py)."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        data = cache.load("jinja", bucket.key, bucket.checksum)
        if isinstance(data, bytes):
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.code is not None:
            cache.store("jinja", bucket.key, bucket.checksum, bucket.bytecode_to_string())
