"""`mkkdumprd crashkernel parse | recommend | apply` (and the `estimate`/`showmem` aliases)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import click

from mkkdumprd.arch import ArchInfo, host_arch, load_arch
from mkkdumprd.crashkernel import apply as ck_apply
from mkkdumprd.crashkernel import recommend as rec
from mkkdumprd.crashkernel.grammar import GrammarError, check_set
from mkkdumprd.crashkernel.parse import CrashkernelInvalid, default_low, parse_crashkernel
from mkkdumprd.crashkernel.size import format_size, parse_size
from mkkdumprd.errors import MkkdumprdError, OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.human_size import human_size as human
from mkkdumprd.quoting import FormatError


class _Size(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _Size()


def _arch(name: str | None) -> ArchInfo:
    return load_arch(name or host_arch())


@click.group()
def crashkernel() -> None:
    """Evaluate, size and apply the crashkernel= reservation."""


@crashkernel.command()
@click.option("--arch", required=True, help="x86_64, aarch64, ppc64le, s390x or riscv64.")
@click.option("--mem", "mem", type=SIZE, required=True, help="System RAM, e.g. 16G.")
@click.option("--json", "as_json", is_flag=True, help="Print {size, offset, high, low, cma}.")
@click.argument("cmdline", nargs=-1, required=True)
def parse(arch: str, mem: int, as_json: bool, cmdline: tuple[str, ...]) -> None:
    """Evaluate CMDLINE's crashkernel= words as ARCH's kernel does with MEM of RAM."""
    info = load_arch(arch)
    try:
        res = parse_crashkernel(" ".join(cmdline), mem, info)
    except CrashkernelInvalid as exc:
        raise OperationError(f"the {info.name} kernel reserves nothing: {exc}") from None
    if as_json:
        click.echo(json.dumps(res.as_json()))
        return
    where = f" at {res.offset:#x}" if res.offset is not None else ""
    if res.high:
        click.echo(f"{human(res.size)} ({res.size} bytes) high (above "
                   f"{human(info.low_max)} when possible)")
        click.echo(f"{human(res.low or 0)} ({res.low} bytes) low (below {human(info.low_max)})")
    else:
        click.echo(f"{human(res.size)} ({res.size} bytes){where}")
        if info.high_low and res.offset is None:
            low = default_low(info, " ".join(cmdline))
            click.echo(f"(placed below {human(info.low_max)} when it fits; otherwise higher, "
                       f"plus {human(low)} low)")
        if res.offset is not None and res.offset % info.align:
            click.echo(f"warning: offset {res.offset:#x} is not aligned to "
                       f"{format_size(info.align)} (CRASH_ALIGN); the reservation may fail")
    if res.cma:
        click.echo(f"{human(res.cma)} ({res.cma} bytes) CMA, usable by the running kernel")
    for note in res.notes:
        click.echo(f"warning: {note}")


def _kernel_files(host: Host, info: ArchInfo, kver: str | None
                  ) -> tuple[Path | None, Path | None, str | None, list[str]]:
    """The target kernel (`kver`, default the running one) and its capture image, when the
    image has been built: (image, kernel, kver, notes)."""
    from mkkdumprd.loader import locate

    which = "kernel"
    if kver is None:
        which = "the running kernel"
        try:
            kver = locate.running_kver(host)
        except MkkdumprdError:
            return None, None, None, []
    try:
        kpath: Path | None = host.path(locate.find_kernel(host, info, kver))
    except MkkdumprdError:
        kpath = None
    img = locate.default_image(host, kver)
    if not host.is_file(img):
        return None, kpath, kver, []
    return host.path(img), kpath, kver, [f"sized for the capture image {img} of {which} {kver}"]


def _collector(host: Host, config: Path | None) -> tuple[str, ...]:
    from mkkdumprd.config.kdumpconf import DEFAULT_CONF, load_kdump_conf

    path = config if config is not None else host.path(DEFAULT_CONF)
    if config is None and not path.is_file():
        return load_kdump_conf(None, default=path).core_collector
    return load_kdump_conf(path, default=path).core_collector


def _recommendation(arch: str | None, mem: int | None, image: Path | None,
                    kernel: Path | None, luks: int, root: Path, kver: str | None = None,
                    no_cma: bool = False, config: Path | None = None) -> rec.Recommendation:
    from mkkdumprd.crashkernel import layout as lay

    host = Host(root)
    info = _arch(arch)
    if mem is not None:
        ram, ram_source = mem, "--mem"
    else:
        ram, ram_source = rec.system_ram(host)
    notes: list[str] = []
    if image is None:
        found_image, found_kernel, found_kver, found = _kernel_files(host, info, kver)
        if kernel is None:
            image, kernel, kver, notes = found_image, found_kernel, found_kver, found
    if kver is None and kernel is not None:
        kver = lay.kver_of(PurePosixPath(kernel))
    if image is None and kernel is None:
        return rec.recommend(info, ram, ram_source, None, notes)
    if image is None:
        raise UsageError("--kernel alone is not enough for an estimate; pass the capture "
                         "image with --image too (or neither, for the table default)")
    if not image.is_file():
        raise UsageError(f"capture image {image} does not exist; build it first or fix --image")
    if kernel is not None and not kernel.is_file():
        raise UsageError(f"kernel {kernel} does not exist; fix --kernel")
    try:
        facts = rec.image_facts(image, info.page_size)
    except MkkdumprdError:
        raise
    except (OSError, ValueError) as exc:
        raise OperationError(f"cannot read the capture image {image}: {exc}") from None
    cfg = lay.read_kernel_config(host, kver)
    page_size = 65536 if cfg.on("ARM64_64K_PAGES") else info.page_size
    if page_size != info.page_size:
        from dataclasses import replace

        info = replace(info, page_size=page_size)
    hardware = tuple(rec.Term(t.name, t.size, t.source)
                     for t in lay.hardware_terms(info, host, cfg))
    kruntime, ksource = rec.kernel_facts(kernel, info)
    inputs = rec.EstimateInputs(
        arch=info, ram=ram, kernel_runtime=kruntime, kernel_source=ksource,
        image_compressed=facts.compressed, image_unpacked=facts.unpacked,
        image_entries=facts.entries, image_source=str(image), modules=facts.modules,
        module_count=facts.module_count, cpus=rec.capture_cpus(info, host), luks=luks,
        hardware=hardware, elfcorehdr=lay.elfcorehdr_size(info, cfg), crypt=facts.crypt)
    use_cma, why = lay.cma_support(info, cfg)
    if use_cma and no_cma:
        use_cma, why = False, "--no-cma"
    if use_cma and lay.keeps_user_pages(_collector(host, config)):
        use_cma, why = False, ("kdump.conf's core_collector keeps user pages (no makedumpfile "
                               "-d with bit 8), which the CMA area would drop")
    ram_below = lay.low_ram(host, info.low_max) if mem is None and info.low_max else None
    return rec.recommend(info, ram, ram_source, inputs, notes,
                         rec.LayoutInputs(use_cma, why, ram_below))


_rec_options = [
    click.option("--arch", default=None, help="Architecture (default: this machine's)."),
    click.option("--mem", "mem", type=SIZE, default=None,
                 help="RAM of the machine to size for (default: /proc/iomem or /proc/meminfo)."),
    click.option("--kver", default=None,
                 help="The kernel to size for (default: the running one): its kernel image, "
                 "capture image and config (/boot/config-KVER or /usr/lib/modules/KVER/config)."),
    click.option("--image", type=click.Path(path_type=Path), default=None,
                 help="The capture image, for an estimate from its real contents."),
    click.option("--kernel", type=click.Path(path_type=Path), default=None,
                 help="The capture kernel (vmlinuz), for its real runtime size."),
    click.option("--luks-memory", "luks", type=SIZE, default=None,
                 help="Argon2 memory of the LUKS keyslot the capture kernel must open."),
    click.option("--no-cma", is_flag=True,
                 help="Never use crashkernel=,cma (keep user pages reachable in the dump)."),
    click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                 default=None, help="kdump.conf whose collector decides whether CMA may be "
                 "used (default: /etc/kdump.conf under --root)."),
    click.option("--root", type=click.Path(file_okay=False, path_type=Path),
                 default=Path("/"), help="Read /proc and /sys under this directory."),
    click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
]


def _with_rec_options(f: click.decorators.FC) -> click.decorators.FC:
    for opt in reversed(_rec_options):
        f = opt(f)
    return f


def _run_recommend(arch: str | None, mem: int | None, kver: str | None, image: Path | None,
                   kernel: Path | None, luks: int | None, no_cma: bool, config: Path | None,
                   root: Path, as_json: bool) -> None:
    r = _recommendation(arch, mem, image, kernel, luks or 0, root, kver, no_cma, config)
    if as_json:
        click.echo(json.dumps(r.as_json(), indent=2))
    else:
        click.echo(r.render())


@crashkernel.command()
@_with_rec_options
def recommend(arch: str | None, mem: int | None, kver: str | None, image: Path | None,
              kernel: Path | None, luks: int | None, no_cma: bool, config: Path | None,
              root: Path, as_json: bool) -> None:
    """The crashkernel= words for this machine and kernel: plain, ,high+,low or fixed+,cma."""
    _run_recommend(arch, mem, kver, image, kernel, luks, no_cma, config, root, as_json)


@crashkernel.command()
@click.option("--value", "values", multiple=True,
              help="A crashkernel= value, canonical only: SIZE[@OFFSET], "
              "START-[END]:SIZE,...[@OFFSET] or SIZE,high|low|cma; repeat it (or separate "
              "by spaces) for a set such as '96M 256M,cma' (default: this arch's table, e.g. "
              "1G-4G:192M,...).")
@click.option("--recommended", is_flag=True,
              help="Write what `crashkernel recommend` gives for --kver (recorded as a "
              "recommendation, so auto_reset_crashkernel may replace it later).")
@click.option("--kver", default=None, help="With --recommended: the kernel to size for.")
@click.option("--if-ours", is_flag=True,
              help="Change nothing unless the current value is one mkkdumprd recommended.")
@click.option("--auto", is_flag=True,
              help="What the kernel install hooks run: when kdump.conf's "
              "auto_reset_crashkernel is yes, --recommended --if-ours; else nothing.")
@click.option("--arch", default=None, help="Architecture whose table is the default value.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="The system whose boot configuration is changed.")
@click.option("--dry-run", "-n", is_flag=True, help="Show the diff; change nothing.")
@click.option("--force", is_flag=True,
              help="Override a crashkernel= set by hand (the value apply wrote last is "
              "recognised as its own and needs no --force).")
def apply(values: tuple[str, ...], recommended: bool, kver: str | None, if_ours: bool,
          auto: bool, arch: str | None, root: Path, dry_run: bool, force: bool) -> None:
    """Write the crashkernel= words (grubby, s390x zipl.conf + zipl, grub.d or
    /etc/kernel/cmdline), all at once."""
    host = Host(root)
    info = _arch(arch)
    if auto:
        from mkkdumprd.config.kdumpconf import DEFAULT_CONF, load_kdump_conf

        conf = host.path(DEFAULT_CONF)
        if not load_kdump_conf(conf if conf.is_file() else None,
                               default=conf).auto_reset_crashkernel:
            click.echo("note: auto_reset_crashkernel is no in kdump.conf; crashkernel= left "
                       "alone")
            return
        if values:
            raise UsageError("--value and --auto exclude each other")
        recommended = if_ours = True
    if recommended and values:
        raise UsageError("--value and --recommended exclude each other")
    if if_ours:
        had, was_rec = ck_apply.applied_record(host)
        now = ck_apply.current_values(host)
        # never an administrator's value: only a set recorded as our recommendation
        if not (had and was_rec and now and set(now) <= set(had)):
            shown = " ".join(f"crashkernel={v}" for v in now) or "no crashkernel="
            click.echo(f"note: left alone: the boot configuration has {shown}, not a value "
                       "mkkdumprd recommended")
            return
    if recommended:
        r = _recommendation(arch, None, None, None, 0, root, kver)
        if not r.chosen:
            raise OperationError(f"nothing to recommend: {r.reason}")
        words = r.value.split()
    else:
        words = [w for v in (values or (info.default_table,)) for w in v.split()]
    words = [w.removeprefix("crashkernel=") for w in words]
    try:
        # Only the canonical grammar is written (the kernel's parser would ignore junk
        # after a valid prefix), then the kernel's own checks (any RAM size is fine here).
        checked = check_set(words)
        parse_crashkernel(" ".join(f"crashkernel={v}" for v in checked), 1 << 62, info)
    except GrammarError as exc:
        raise UsageError(str(exc)) from None
    except CrashkernelInvalid as exc:
        raise UsageError(f"crashkernel={' '.join(words)} is not valid on {info.name}: "
                         f"{exc}") from None
    try:
        plan = ck_apply.plan_apply(host, checked, force or if_ours, recommended)
    except FormatError as exc:
        raise UsageError(str(exc)) from None
    for k in plan.kept:
        click.echo(f"hand-set: {k}")
    diff = plan.diff()
    if diff:
        click.echo(diff, nl=False)
    if plan.command:
        click.echo(f"{'would run' if dry_run else 'command'}: {' '.join(plan.command)}")
    for note in plan.notes:
        click.echo(f"note: {note}")
    if dry_run or not plan.needed:
        if dry_run:
            click.echo("dry run: nothing written")
        return
    for line in ck_apply.perform(plan, host):
        click.echo(line)


@click.command()
@_with_rec_options
def estimate(arch: str | None, mem: int | None, kver: str | None, image: Path | None,
             kernel: Path | None, luks: int | None, no_cma: bool, config: Path | None,
             root: Path, as_json: bool) -> None:
    """Alias of `crashkernel recommend` (as kdumpctl estimate)."""
    _run_recommend(arch, mem, kver, image, kernel, luks, no_cma, config, root, as_json)


@click.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"))
def showmem(root: Path) -> None:
    """Show the current crashkernel= reservation (as kdumpctl showmem)."""
    from mkkdumprd.loader.status import reserved_bytes

    size = reserved_bytes(Host(root))
    if size is None:
        raise OperationError("this kernel has no crash dump support "
                             "(/sys/kernel/kexec_crash_size is missing)")
    if size == 0:
        raise OperationError("no memory is reserved for the crash kernel (crashkernel= is "
                             "missing from the kernel command line)")
    from mkkdumprd.crashkernel.fit import reserved_cma

    cma = reserved_cma(Host(root))
    click.echo(f"Reserved {format_size(size)} memory for crash kernel "
               f"({PurePosixPath('/sys/kernel/kexec_crash_size')}: {size} bytes)")
    if cma:
        click.echo(f"plus {format_size(cma)} of CMA (crashkernel=,cma), used by this system "
                   "until a crash")


COMMANDS: list[click.Command] = [crashkernel, estimate, showmem]
