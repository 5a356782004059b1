"""`mkkdumprd config check|show`: validate kdump.conf without building, as `sshd -t` does."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from mkkdumprd.config.directives import help_text
from mkkdumprd.config.kdumpconf import DEFAULT_CONF, read_kdump_conf
from mkkdumprd.config.model import Diagnostic, DumpPolicy, KdumpConfig
from mkkdumprd.config.render import config_as_dict, diagnostic_as_dict, render_kdump_conf
from mkkdumprd.config.target_spec import POLICY_HELP, SPEC_HELP, apply_targets
from mkkdumprd.config.values import printable
from mkkdumprd.errors import ConfigError, UsageError

_CONFIG_HELP = (f"kdump.conf to read (default: {DEFAULT_CONF} if it exists, else Fedora's "
                "defaults).")


def _resolve(config_file: Path | None, target_specs: tuple[str, ...],
             dump_policy: str | None = None
             ) -> tuple[str, KdumpConfig | None, list[Diagnostic], list[Diagnostic]]:
    """(source shown to the user, config or None, errors, warnings)."""
    if config_file is not None:
        source = printable(str(config_file))
    elif DEFAULT_CONF.exists():
        source = str(DEFAULT_CONF)
    else:
        source = "<defaults>"
    result = read_kdump_conf(config_file)
    config, errors, warnings = result.config, list(result.errors), list(result.warnings)
    if config is not None and (target_specs or dump_policy is not None):
        shown = printable(" ".join(target_specs))
        try:
            config = apply_targets(config, list(target_specs), dump_policy)
            warnings = list(config.warnings)
        except ConfigError as exc:
            errors += [Diagnostic(where, msg, shown)
                       for where, msg in exc.problems]
            config = None
        except UsageError as exc:
            errors.append(Diagnostic(None, str(exc), shown))
            config = None
    return source, config, errors, warnings


def explain_targets(config: KdumpConfig) -> list[str]:
    """What the dump does with several targets, one line each (`config check`)."""
    policy = config.dump_policy
    how = {DumpPolicy.FALLBACK: "tried in this order until one holds a complete vmcore; "
                                "failure_action runs only when none does",
           DumpPolicy.ALL: "each gets its own complete vmcore, in this order; the dump counts "
                           "as saved when at least one holds it, failure_action runs when "
                           "none does",
           DumpPolicy.SINGLE: "the only target"}[policy]
    out = [f"dump_policy {policy.value}: {len(config.targets)} targets, {how}:"]
    for i, t in enumerate(config.targets, 1):
        where = f" ({t.where})" if t.where else " (--target)"
        out.append(f"  {i}. {t.describe()}{where}")
    return out


def _collector_check(config: KdumpConfig) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """core_collector's options as this machine's makedumpfile judges them."""
    from mkkdumprd.assemble.collector_check import collector_problems
    from mkkdumprd.host import Host

    view = Host.this_machine()
    found = view.which(config.core_collector[0]) if config.core_collector else None
    where = config.location("core_collector")
    text = printable(" ".join(config.core_collector))
    # the messages carry file:line themselves when the directive was written
    errs, warns = collector_problems(replace(config, locations=()),
                                     None if found is None else view.path(found))
    return ([Diagnostic(where, e, text) for e in errs], [Diagnostic(where, w, text) for w in warns])


def _kernel_warnings() -> list[Diagnostic]:
    """What the running kernel's settings mean for kdump (crash_kexec_post_notifiers)."""
    from mkkdumprd.host import Host
    from mkkdumprd.records.setup import post_notifiers_warning

    warning = post_notifiers_warning(Host.this_machine())
    return [] if warning is None else [Diagnostic(None, warning)]


def _echo_diagnostics(kind: str, diags: list[Diagnostic]) -> None:
    for diag in diags:
        where = str(diag.where) if diag.where else "mkkdumprd"
        click.echo(f"{where}: {kind}: {diag.message}", err=True)


_config_option = click.option("-c", "--config", "config_file", default=None,
                              type=click.Path(path_type=Path), help=_CONFIG_HELP)
_target_option = click.option("--target", "target_specs", metavar="SPEC", multiple=True,
                              help=SPEC_HELP)
_policy_option = click.option("--dump-policy", "dump_policy", default=None,
                              type=click.Choice([p.value for p in DumpPolicy]),
                              help=POLICY_HELP)


@click.group("config", help="Validate or show kdump.conf (Fedora's syntax) without building "
             "anything.\n\n" + help_text())
def config_group() -> None:
    pass


@config_group.command("check")
@_config_option
@_target_option
@_policy_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the resolved configuration, warnings and errors as JSON.")
@click.pass_context
def check(ctx: click.Context, config_file: Path | None, target_specs: tuple[str, ...],
          dump_policy: str | None, as_json: bool) -> None:
    """Check kdump.conf: exit 0 when valid, 2 with every error listed.

    Only the file is read (no device, server or kernel is needed), except that
    makedumpfile, when installed here, is asked whether it accepts core_collector's
    options, and a local target on LVM, md RAID or LUKS on this machine is described in one
    `stack:` line (a layer the capture image cannot set up is an error). Warnings (the
    obsolete `default`, ignored dracut_args flags, ...) go to stderr with file:line.
    `dracut_args --mount "DEV DIR FSTYPE"` is read as the dump target (Fedora's rules);
    `config show` writes it as a target line.
    The running kernel is checked for crash_kexec_post_notifiers (a warning).
    """
    source, config, errors, warnings = _resolve(config_file, target_specs, dump_policy)
    stack: str | None = None
    if config is not None and not errors:
        collector_errors, collector_warnings = _collector_check(config)
        errors += collector_errors
        warnings += collector_warnings
        stack, stack_error = _stack_line(config)
        if stack_error:
            errors.append(Diagnostic(None, stack_error))
        warnings += _kernel_warnings()
    if as_json:
        doc = {
            "valid": not errors,
            "config": config_as_dict(config) if config is not None and not errors else None,
            "warnings": [diagnostic_as_dict(d, source) for d in warnings],
            "errors": [diagnostic_as_dict(d, source) for d in errors],
            **({"stack": stack} if stack else {}),
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        if stack:
            click.echo(f"stack: {stack}")
        _echo_diagnostics("warning", warnings)
        _echo_diagnostics("error", errors)
        if errors:
            count = f"{len(errors)} error" + ("s" if len(errors) > 1 else "")
            click.echo(f"{source}: {count}; fix them and run `mkkdumprd config check` again",
                       err=True)
        elif source == "<defaults>":
            click.echo(f"no {DEFAULT_CONF}: Fedora's defaults apply (valid)")
        else:
            click.echo(f"{source}: valid")
        if config is not None and not errors and config.more_targets:
            for line in explain_targets(config):
                click.echo(line)
    ctx.exit(2 if errors else 0)


def _stack_line(config: KdumpConfig) -> tuple[str | None, str | None]:
    """(the block stack under a local target on this machine when it has layers, an error
    for a layer the capture image cannot set up); anything else this machine cannot tell
    (no such device here: a config for another machine) says nothing."""
    from mkkdumprd.assemble.target import resolve_target
    from mkkdumprd.config.model import TargetKind
    from mkkdumprd.errors import MkkdumprdError
    from mkkdumprd.host import Host
    from mkkdumprd.storage.discover import with_stack
    from mkkdumprd.storage.stack import UnsupportedLayer

    if config.target.kind is not TargetKind.LOCAL:
        return None, None
    machine = Host.this_machine()
    try:
        target, _ = resolve_target(config, machine, True)
        target = with_stack(target, machine, True)
    except UnsupportedLayer as exc:
        return None, str(exc)
    except (MkkdumprdError, OSError):
        return None, None
    if target.stack is None or not target.stack.modules():
        return None, None
    return target.stack.describe(), None


@config_group.command("show")
@_config_option
@_target_option
@_policy_option
@click.pass_context
def show(ctx: click.Context, config_file: Path | None, target_specs: tuple[str, ...],
         dump_policy: str | None) -> None:
    """Print the effective configuration in kdump.conf syntax, defaults filled in.

    Lines that were not in the file end with `# default`. The output parses back to the
    same configuration.
    """
    _, config, errors, warnings = _resolve(config_file, target_specs, dump_policy)
    _echo_diagnostics("warning", warnings)
    if config is None or errors:
        _echo_diagnostics("error", errors)
        ctx.exit(2)
        return
    click.echo(render_kdump_conf(config), nl=False)


COMMANDS: list[click.Command] = [config_group]
