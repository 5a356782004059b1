"""Assemble the capture image: active modules → ImageSpec → (optionally) the written file.

assemble() is a flat list of named steps, one direction, nothing staged on disk:

1. plan_image: which modules.d entries are active (resolver), the dump target as the
   capture kernel must find it (assemble/target.py), the warnings known up front;
2. collect_from_host: every module's directories, device nodes, host files, binaries
   (with their library closure), hooks' entries, and the kernel modules of all sources
   resolved together into one closure with one load order, plus their firmware;
3. finish_spec: the templates rendered, paths folded below symlinked directories, the
   normalised /etc/kdump.conf and the manifest (assemble/manifest.py) added.

The build cache (assemble/cached.py) enters as one BuildCache that loads its parts when a
step first asks and stores what the run learnt on exit. build_image() writes the result;
whether an existing file may be replaced is decided by assemble/rebuild_policy.py.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mkkdumprd import __version__
from mkkdumprd.assemble.collector_threads import collector_threads
from mkkdumprd.assemble.request import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from mkkdumprd.assemble.request import BuildRequest as BuildRequest  # re-exported: its old home
from mkkdumprd.config.model import Action, KdumpConfig, TargetKind
from mkkdumprd.errors import OperationError, UsageError
from mkkdumprd.host import Host
from mkkdumprd.image import layout
from mkkdumprd.image.spec import (
    Entry,
    ImageSpec,
    Kind,
    data_entry,
    device_entry,
    dir_entry,
    file_entry,
    symlink_entry,
)
from mkkdumprd.resources import data_dir

if TYPE_CHECKING:
    from mkkdumprd.assemble.cached import BuildCache
    from mkkdumprd.assemble.moduledef import ModuleDef
    from mkkdumprd.assemble.target import ResolvedTarget
    from mkkdumprd.image.writer import ImageStats
    from mkkdumprd.kmod.index import ModuleIndex
    from mkkdumprd.network.plan import NetworkPlan

# The stages (target resolution with its kmod discovery, jinja2, hooks) are imported where
# they run. BuildRequest lives in assemble/request.py (re-exported here), so that `mkkdumprd
# build` on an up-to-date image does not import this module at all.

# Seconds each dump attempt may take when there are several targets (kdump.attempt_timeout=
# overrides it at dump time): waits, mounts and the copy of the vmcore together.
ATTEMPT_TIMEOUT = 3600


@dataclass(frozen=True)
class BuildResult:
    """An assembled image: its spec, manifest and contents; stats once written."""

    spec: ImageSpec
    target: ResolvedTarget
    modules: tuple[str, ...]
    kernel_modules: tuple[str, ...]
    binaries: tuple[str, ...]
    warnings: tuple[str, ...]
    manifest: dict[str, Any]
    stats: ImageStats | None = None
    output: Path | None = None
    seconds: float = 0.0
    more_targets: tuple[ResolvedTarget, ...] = ()   # the dump tries them after `target`
    rootfs: ResolvedTarget | None = None    # failure_action dump_to_rootfs (its stack too)


@dataclass(frozen=True)
class Plan:
    """What the image is made of, decided before any content is read from the host."""

    modules: tuple[ModuleDef, ...]          # active, dependencies first
    names: tuple[str, ...]
    target: ResolvedTarget
    rootfs: ResolvedTarget | None           # failure_action dump_to_rootfs
    applets: tuple[str, ...]
    warnings: tuple[str, ...]
    network: NetworkPlan | None = None      # nfs/ssh: the capture network, worked out once
    # dump_policy fallback/all: the targets after the first, in the order the dump tries them
    more_targets: tuple[PlannedTarget, ...] = ()
    first_hostonly: bool = True             # False: the first target is taken as written

    @property
    def targets(self) -> tuple[PlannedTarget, ...]:
        return (PlannedTarget(self.target, self.network, self.first_hostonly),
                *self.more_targets)


@dataclass(frozen=True)
class PlannedTarget:
    """One dump target as the image tries it, with its own capture network."""

    resolved: ResolvedTarget
    network: NetworkPlan | None
    # False: host-only discovery failed for it (dump_policy fallback), so it is taken as given
    hostonly: bool


@dataclass(frozen=True)
class Collected:
    """What the host gave: entries (templates not rendered yet) and what the scripts see."""

    spec: ImageSpec
    found: tuple[str, ...]                  # binary names found on the host
    binaries: tuple[str, ...]               # their paths
    kernel_modules: tuple[str, ...]         # in load order
    warnings: tuple[str, ...]
    # module name → the frozen settings its template_vars hook gave (network, nfs, ssh)
    template_vars: Mapping[str, object] = field(default_factory=dict)
    # per further target (Plan.more_targets order): its per-target modules' template_vars
    target_vars: tuple[Mapping[str, object], ...] = ()


@dataclass
class _Acc:
    """What the modules contribute, gathered before the spec is filled."""

    entries: list[Entry] = field(default_factory=list)
    binaries: dict[str, list[PurePosixPath]] = field(default_factory=dict)  # module → paths
    found: list[str] = field(default_factory=list)                          # binary names
    kmods: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    template_vars: dict[str, object] = field(default_factory=dict)          # name → settings
    target_vars: list[dict[str, object]] = field(default_factory=list)      # per more target


def build_image(req: BuildRequest, cache: BuildCache | None = None) -> BuildResult:
    """Assemble the image and, when req.output is set, write it there.

    An existing file at req.output is replaced: whether that is allowed is the rebuild
    policy's decision (assemble/rebuild_policy.py: ensure_image), taken before this runs.
    """
    t0 = time.monotonic()
    if req.output is None:
        return assemble(req, cache)
    import threading

    from mkkdumprd.assemble.cached import opened
    from mkkdumprd.image.writer import write_image

    with opened(cache) as run:
        result = assemble(req, run)
        # What the run learnt is pickled while zstd compresses the image (it releases the
        # GIL); the block's end then finds nothing left to store.
        saver = threading.Thread(target=run.save, name="mkkdumprd-cache-save", daemon=True)
        saver.start()
        try:
            stats = write_image(result.spec, req.output, compression=req.compression,
                                level=req.level, source_date_epoch=req.source_date_epoch)
        finally:
            saver.join()
    return replace(result, stats=stats, output=req.output, seconds=time.monotonic() - t0)


def assemble(req: BuildRequest, cache: BuildCache | None = None) -> BuildResult:
    """plan → collect from the host → finish the spec. `cache`: the run's build cache (one
    is opened, and stored on return, when none is given)."""
    from mkkdumprd.assemble.cached import opened

    with opened(cache) as run:
        if req.kmoddir.is_dir():  # (else collect_from_host says so)
            run.prefetch_module_index(req.kmoddir, req.kver)
        plan = plan_image(req)
        collected = collect_from_host(req, plan, run)
        spec, manifest = finish_spec(req, plan, collected, run)
    return BuildResult(spec=spec, target=plan.target, modules=plan.names,
                       kernel_modules=collected.kernel_modules, binaries=collected.binaries,
                       warnings=tuple(dict.fromkeys(collected.warnings)), manifest=manifest,
                       more_targets=tuple(t.resolved for t in plan.more_targets),
                       rootfs=plan.rootfs)


# ---- 1. plan -------------------------------------------------------------------------------

def plan_image(req: BuildRequest) -> Plan:
    """The active modules and the dump target; errors about the request come from here."""
    from mkkdumprd.assemble.machine_facts import machine_facts
    from mkkdumprd.assemble.moduledef import load_all
    from mkkdumprd.assemble.resolver import resolve
    from mkkdumprd.assemble.target import resolve_rootfs, resolve_target
    from mkkdumprd.storage.discover import storage_modules, with_stack
    from mkkdumprd.storage.stack import UnsupportedLayer

    config = req.config
    defs = load_all(req.modules_dir or data_dir("modules.d"))
    warnings: list[str] = []
    if config.more_targets:
        from mkkdumprd.assemble.targets import plan_targets

        planned = plan_targets(req, warnings)
        target, network = planned[0].resolved, planned[0].network
        first_hostonly = planned[0].hostonly
        more: tuple[PlannedTarget, ...] = tuple(
            _no_iscsi(replace(
                p, resolved=with_stack(p.resolved, req.machine, req.hostonly and p.hostonly)))
            for p in planned[1:])
    else:
        target, found = resolve_target(config, req.machine, req.hostonly)
        warnings.extend(found)
        network = None          # after the check below: no module, no network plan
        first_hostonly = True
        more = ()
    target = with_stack(target, req.machine, req.hostonly and first_hostonly)
    rootfs = None
    if config.failure_action is Action.DUMP_TO_ROOTFS:
        rootfs, rootfs_warnings = resolve_rootfs(req.machine, req.hostonly)
        warnings.extend(rootfs_warnings)
        # The root's own stack (LVM, md, ...) is set up as a target's would be; a layer
        # the image cannot set up takes dump_to_rootfs away, not the whole image.
        try:
            rootfs = with_stack(rootfs, req.machine, req.hostonly) if rootfs else None
        except UnsupportedLayer as exc:
            rootfs = None
            why = str(exc).replace("the dump target is on", "the root filesystem is on")
            warnings.append(f"failure_action dump_to_rootfs: {why}; the image runs "
                            f"final_action instead")
    # build --add and kdump.conf's dracut_args --add alike.
    added = tuple(dict.fromkeys([*req.add_modules, *config.add_modules]))
    stacks = [*storage_modules(target, added),
              *(m for p in more for m in storage_modules(p.resolved, ())),
              *(storage_modules(rootfs, ()) if rootfs is not None else ())]
    active = resolve(defs, config, machine_facts(req.machine, req.hostonly),
                     list(dict.fromkeys(stacks)))
    for t in config.targets:
        if not any(t.kind in m.when.targets for m in active):
            raise UsageError(
                f"no module in modules.d handles {t.kind.value} targets yet; "
                f"use a local or raw target"
            )
    if not config.more_targets or (network is None and _has_iscsi(target)):
        network = capture_network(req, target)
    warnings.extend(str(w) for w in config.warnings)
    warnings.extend(_collector_warnings(config))
    return Plan(modules=tuple(active), names=tuple(m.name for m in active), target=target,
                rootfs=rootfs,
                applets=tuple(dict.fromkeys(a for m in active for a in m.busybox_applets)),
                warnings=tuple(warnings), network=network, more_targets=more,
                first_hostonly=first_hostonly)


# ---- 2. collect from the host --------------------------------------------------------------

def collect_from_host(req: BuildRequest, plan: Plan, cache: BuildCache) -> Collected:
    """Each module's declared entries and hooks, then binaries and kernel modules."""
    if not req.kmoddir.is_dir():
        raise UsageError(
            f"kernel modules folder {req.kmoddir} does not exist; install the kernel "
            f"{req.kver} or give --kmoddir"
        )
    _import_later_steps()
    index = cache.module_index(req.kmoddir, req.kver)
    cache.elf_objects()
    acc = _Acc(warnings=list(plan.warnings), target_vars=[{} for _ in plan.more_targets])
    for m in plan.modules:
        _declared(m, req.sysroot, acc)
        for i, planned in enumerate(plan.targets):
            if not serves(m, planned, first=i == 0):
                continue
            into = acc.template_vars if i == 0 else acc.target_vars[i - 1]
            _run_hooks(req, plan, m, index, acc, planned, into)
    spec = ImageSpec()
    spec.extend(acc.entries)
    spec.extend(_binary_entries(acc, req.sysroot, req.arch))
    kmod_names = _kernel_modules(req, acc, index, spec)
    return Collected(spec=spec, found=tuple(acc.found),
                     binaries=tuple(str(p) for paths in acc.binaries.values() for p in paths),
                     kernel_modules=kmod_names, warnings=tuple(acc.warnings),
                     template_vars=dict(acc.template_vars),
                     target_vars=tuple(dict(v) for v in acc.target_vars))


# What the later steps import (jinja2 for the templates, zstandard for the writer, the
# closures): imported before the build waits for the module index's thread (assemble()),
# while that thread is mostly waiting on the kernel, instead of after it.
_LATER_STEPS = ("mkkdumprd.elf.entries", "mkkdumprd.kmod.closure", "mkkdumprd.kmod.entries",
                "mkkdumprd.kmod.firmware", "mkkdumprd.kmod.arch_check",
                "mkkdumprd.assemble.templates", "mkkdumprd.image.writer")


def _import_later_steps() -> None:
    import importlib

    for name in _LATER_STEPS:
        importlib.import_module(name)


def per_target(m: ModuleDef) -> bool:
    """Whether a module serves each dump target on its own: it renders a target's script
    (a target module: local, nfs, raw, ssh) or its capture network (network)."""
    return any(t.dest in (layout.TARGET_SH, layout.NETWORK_SH) for t in m.templates)


def serves(m: ModuleDef, planned: PlannedTarget, *, first: bool) -> bool:
    """Whether the hooks of `m` run for this target: every module for the first target
    (as a single-target build), per-target modules for the targets they handle."""
    if not per_target(m):
        return first
    if m.when.targets:
        return planned.resolved.kind in m.when.targets
    return planned.network is not None


def _run_hooks(req: BuildRequest, plan: Plan, m: ModuleDef, index: ModuleIndex,
               acc: _Acc, planned: PlannedTarget, into: dict[str, object]) -> None:
    from mkkdumprd.assemble.hooks import BuildContext, load_hooks

    hooks = load_hooks(m)
    ctx = BuildContext(config=req.config, target=planned.resolved, kver=req.kver,
                       arch=req.arch, sysroot=req.sysroot, machine=req.machine,
                       hostonly=req.hostonly and planned.hostonly, module=m,
                       active=plan.names, applets=plan.applets, index=index,
                       rootfs=plan.rootfs, network=planned.network)
    if hooks.check:
        acc.warnings.extend(hooks.check(ctx))
    if hooks.kernel_modules:
        acc.kmods.extend(hooks.kernel_modules(ctx))
    if hooks.entries:
        acc.entries.extend(hooks.entries(ctx))
    if hooks.template_vars:
        into[_vars_name(m)] = _checked_vars(m, hooks.template_vars(ctx))


# ---- 3. finish the spec --------------------------------------------------------------------

def finish_spec(req: BuildRequest, plan: Plan, collected: Collected,
                cache: BuildCache) -> tuple[ImageSpec, dict[str, Any]]:
    """Rendered templates, paths folded below symlinks, kdump.conf, the manifest last."""
    from mkkdumprd.assemble import manifest as manifest_mod

    extra_inputs = manifest_mod.shaping_inputs(req)
    # The manifest's digests are worked out in a thread while the templates render (file
    # reads and sha256 release the GIL; jinja2 holds it).
    cache.prefetch_digests([*(str(e.source) for e in collected.spec if e.source is not None),
                            *extra_inputs])
    raw = ImageSpec()
    raw.extend(collected.spec)
    raw.extend(_template_entries(req, plan, collected, cache))
    spec = fold_symlinked_dirs(raw)
    spec.add(data_entry("/etc/kdump.conf",
                        manifest_mod.kdump_conf_text(
                            req.config, plan.target,
                            [t.resolved for t in plan.more_targets]),
                        "the resolved kdump.conf (module kdump)", mode=0o644))
    man = manifest_mod.build_manifest(
        spec, version=__version__, kver=req.kver, arch=req.arch, config=req.config,
        target=plan.target, modules=plan.names, kernel_modules=collected.kernel_modules,
        binaries=collected.binaries, extra_inputs=extra_inputs,
        request=manifest_mod.request_record(req), digest=cache.sha256,
    )
    spec.add(manifest_mod.manifest_entry(man))
    return spec, man


def _has_iscsi(target: ResolvedTarget) -> bool:
    return target.stack is not None and bool(target.stack.iscsi_luns())


def _no_iscsi(planned: PlannedTarget) -> PlannedTarget:
    """A further target on an iSCSI LUN is refused: the storage settings (storage.sh, the
    login) are the first target's."""
    if _has_iscsi(planned.resolved):
        raise UsageError(f"the dump target {planned.resolved.describe()} is on an iSCSI LUN; "
                         f"only the first dump target may be (put it first)")
    return planned


def capture_network(req: BuildRequest, target: ResolvedTarget) -> NetworkPlan | None:
    """The capture network of an nfs/ssh target (or of a local target's iSCSI portal, or of
    fence_kdump's first peer), worked out once per build (it may ask the resolver) for every
    hook that needs it; None for local targets without iSCSI, fence_kdump or netconsole."""
    if target.kind not in (TargetKind.NFS, TargetKind.SSH):
        # iSCSI under a local target: the network towards the (first) portal, which the
        # target cannot do without; netconsole and fence_kdump use the same network.
        # fence_kdump on a local target: the network towards the first peer (a remote
        # target's network carries the messages otherwise; modules.d/fence-kdump).
        # netconsole on a local target: the network towards its log host.
        luns = target.stack.iscsi_luns() if target.stack is not None else []
        if luns:
            host = luns[0].address
        elif req.config.fence_kdump_nodes:
            host = req.config.fence_kdump_nodes[0]
        elif req.config.netconsole is not None:
            host = req.config.netconsole.rpartition(":")[0]
        else:
            return None  # (before the import: a local target needs no network package)
        from mkkdumprd.network import capture

        return capture.network_plan(req.machine, host, hostonly=req.hostonly, user_ip=req.ip)
    from mkkdumprd.network import capture

    host = capture.target_host(target.kind.value, target.server or "")
    return capture.network_plan(req.machine, host, hostonly=req.hostonly, user_ip=req.ip)


def fold_symlinked_dirs(spec: ImageSpec) -> ImageSpec:
    """The same entries, none of them below a directory that is a symlink in the image.

    Binaries keep their host paths with the host's links (/lib -> usr/lib on merged-/usr
    systems), so /lib/modules/... or /bin/sh must land where such a link points: the
    archive cannot hold a file under a symlink, and the kernel would not follow it.
    """
    links = {e.path: e.target for e in spec if e.kind is Kind.SYMLINK and e.target}
    link_names = {str(p) for p in links}
    out = ImageSpec()
    for e in spec:
        # Only a path below a symlink moves: found by its string prefixes, without building
        # a PurePosixPath for each parent of every entry.
        path = _canonical(e.path, links) if _below(str(e.path), link_names) else e.path
        out.add(e if path == e.path else replace(e, path=path))
    return out


def _below(path: str, link_names: set[str]) -> bool:
    """Whether a parent of `path` (absolute, normalised) is one of `link_names`."""
    if "/" in link_names:
        return True
    i = path.find("/", 1)
    while i > 0:
        if path[:i] in link_names:
            return True
        i = path.find("/", i + 1)
    return False


def _canonical(path: PurePosixPath, links: dict[PurePosixPath, str]) -> PurePosixPath:
    for _ in range(40):
        for parent in reversed(path.parents):
            target = links.get(parent)
            if target is None:
                continue
            base = PurePosixPath("/") if target.startswith("/") else parent.parent
            new = PurePosixPath(posixpath.normpath(str(base / target)))
            path = new / path.relative_to(parent)
            break
        else:
            return path
    raise UsageError(f"too many levels of symbolic links above {path} in the image")


def _declared(m: ModuleDef, view: Host, acc: _Acc) -> None:
    """The data part of a module.toml, as entries and requests."""
    why = f"module {m.name}"
    for d in m.dirs:
        acc.entries.append(dir_entry(d, f"directory ({why})"))
    for s in m.symlinks:
        acc.entries.append(symlink_entry(s.path, s.target, f"symlink ({why})"))
    for dev in m.devices:
        kind = Kind.CHARDEV if dev.type == "char" else Kind.BLOCKDEV
        acc.entries.append(device_entry(dev.path, kind, dev.major, dev.minor,
                                        f"device node ({why})", mode=dev.mode))
    for f in m.files:
        if not view.is_file(f.src):
            if f.optional:
                continue
            raise OperationError(
                f"{f.src} (needed by {m.source}) does not exist in {view.root}; install it "
                f"or drop the module"
            )
        acc.entries.append(file_entry(f.dest, view.real(f.src), f"file ({why})"))
    from mkkdumprd.elf.entries import find_binary

    for b in m.binaries:
        for name in b.any:
            path = find_binary(view, name)
            if path is not None:
                acc.binaries.setdefault(m.name, []).append(path)
                acc.found.append(name)
                break
        else:
            if not b.optional:
                raise OperationError(
                    f"{' or '.join(b.any)} (needed by module {m.name}) is not installed in "
                    f"{view.root}: install the package that provides it"
                )
    acc.kmods.extend(m.kernel_modules)


def _binary_entries(acc: _Acc, view: Host, arch: str) -> list[Entry]:
    from mkkdumprd.elf.entries import binary_entries

    out: list[Entry] = []
    for module, paths in acc.binaries.items():
        out.extend(binary_entries(paths, view, f"binary (module {module})",
                                  machine=arch))
    return out


def _kernel_modules(req: BuildRequest, acc: _Acc, index: ModuleIndex,
                    spec: ImageSpec) -> tuple[str, ...]:
    from mkkdumprd.kmod.closure import resolve_modules
    from mkkdumprd.kmod.entries import module_entries
    from mkkdumprd.kmod.firmware import firmware_entries

    wanted = list(dict.fromkeys([*acc.kmods, *req.config.extra_modules, *req.add_drivers,
                                 *req.config.add_drivers]))
    omit = tuple(dict.fromkeys([*req.omit_drivers, *req.config.omit_drivers]))
    closure = resolve_modules(index, wanted, omit=omit)
    from mkkdumprd.kmod.arch_check import check_modules_arch

    check_modules_arch(index.host, closure.modules, req.arch)
    spec.extend(module_entries(closure))
    fw, fw_warnings = firmware_entries(closure, req.sysroot)
    spec.extend(fw)
    acc.warnings.extend(fw_warnings)
    return tuple(m.name for m in closure.modules)


def collector_argv(config: KdumpConfig) -> tuple[list[str], list[str]]:
    """(collector for filesystem targets, collector writing a stream to stdout).

    As Fedora's kdump.sh: makedumpfile loses -F for files and gets it for streams.
    """
    argv = list(config.core_collector)
    if PurePosixPath(argv[0]).name != "makedumpfile":
        return argv, argv
    rest = [a for a in argv[1:] if a != "-F"]
    return [argv[0], *rest], [argv[0], "-F", *rest]


def _collector_warnings(config: KdumpConfig) -> list[str]:
    # The -F rule itself is the config parser's (it knows the line to point at).
    return [f"core_collector {config.core_collector[0]} is not makedumpfile: you will "
            f"have to recover the vmcore from the {t.kind.value} target manually"
            for t in config.targets if t.kind in (TargetKind.RAW, TargetKind.SSH)
            and PurePosixPath(config.core_collector[0]).name != "makedumpfile"]


def _vars_name(m: ModuleDef) -> str:
    """The name under which templates see a module's template_vars."""
    return m.name.replace("-", "_")


def _checked_vars(m: ModuleDef, value: object) -> object:
    from mkkdumprd.assemble.moduledef import ModuleDefError

    params = getattr(type(value), "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise ModuleDefError(f"{m.hooks_file}: template_vars must return a frozen dataclass, "
                             f"not {type(value).__name__}")
    return value


def template_context(config: KdumpConfig, target: ResolvedTarget, *, kver: str, arch: str,
                     found_binaries: Sequence[str], init_scripts: Sequence[str],
                     modules: Sequence[str], kernel_modules: Sequence[str],
                     timeout: int = DEFAULT_TIMEOUT,
                     rootfs: ResolvedTarget | None = None,
                     module_vars: Mapping[str, object] | None = None,
                     more_targets: Sequence[ResolvedTarget] = ()) -> dict[str, object]:
    """Everything templates see: the one channel into the capture shell. Every string is
    Tainted (it must be printed with shq); paths in the image are `paths.<name>`
    (image/layout.py); the modules' template_vars are `<module name>.<field>`."""
    from mkkdumprd.assemble.moduledef import ModuleDefError
    from mkkdumprd.assemble.templates import taint

    fs, stream = collector_argv(config)
    ctx: dict[str, object] = {
        "version": __version__,
        "kver": kver,
        "arch": arch,
        "failure_action": config.failure_action.value,
        "final_action": config.final_action.value,
        "timeout": str(timeout),
        "paths": dict(layout.TEMPLATE_PATHS),
        "target": target_vars(target),
        # every target in dump order: its script and what the console calls it
        "targets": [{"script": layout.target_script(i, layout.TARGET_SH),
                     "desc": t.describe(), "number": str(i + 1),
                     "network": "1" if t.kind in (TargetKind.NFS, TargetKind.SSH) else ""}
                    for i, t in enumerate((target, *more_targets))],
        "dump_policy": config.dump_policy.value,
        # one target keeps Fedora's unbounded dump; several are tried in turn, each bounded
        "attempt_timeout": "0" if not more_targets else str(ATTEMPT_TIMEOUT),
        # Empty device: no root filesystem to fall back to (dump_to_rootfs unavailable).
        "rootfs": {
            "device": (rootfs.device or "") if rootfs else "",
            "fstype": (rootfs.fstype or "") if rootfs else "",
            # rootfs.path: where / is inside what the capture kernel mounts (a btrfs
            # subvolume is mounted by id, so usually /).
            "path": posixpath.join(rootfs.path, config.path.lstrip("/")) if rootfs
            else config.path,
            "mount_options": (rootfs.mount_options or "") if rootfs else "",
        },
        "collector_fs": fs,
        "collector_stream": stream,
        "collector_threads": collector_threads(config),
        # several targets: the filesystem targets' free space is checked against what
        # makedumpfile's dry run says it will write (a makedumpfile collector only)
        "collector_estimate": [*fs, "--dry-run", "--show-stats"]
        if more_targets and PurePosixPath(fs[0]).name == "makedumpfile" else [],
        "keep_dumps": str(config.keep_dumps),
        "kdump_pre": config.kdump_pre or "",
        "kdump_post": config.kdump_post or "",
        "hook_timeout": str(config.hook_timeout),
        "found_binaries": list(found_binaries),
        "init_scripts": list(init_scripts),
        "modules": list(modules),
        "kernel_modules": list(kernel_modules),
    }
    for name, value in (module_vars or {}).items():
        if name in ctx:
            raise ModuleDefError(f"module {name}: its template_vars would hide the template "
                                 f"variable {name!r}; rename the module")
        ctx[name] = value
    return {k: taint(v) for k, v in ctx.items()}


def target_vars(target: ResolvedTarget) -> dict[str, str]:
    """What a target's script sees as `target`."""
    return {"kind": target.kind.value, "device": target.device or "",
            "fstype": target.fstype or "", "path": target.path, "server": target.server or "",
            "mount_options": target.mount_options or ""}


def _per_target_context(ctx: dict[str, object], index: int, planned: PlannedTarget,
                        module_vars: Mapping[str, object]) -> dict[str, object]:
    """The context of target number `index`'s scripts: its target, its modules' settings,
    its own script paths."""
    from mkkdumprd.assemble.templates import taint

    paths = dict(layout.TEMPLATE_PATHS)
    for first in (layout.TARGET_SH, layout.NETWORK_SH):
        key = next(k for k, v in layout.TEMPLATE_PATHS.items() if v == first)
        paths[key] = layout.target_script(index, first)
    out = {**ctx, "target": taint(target_vars(planned.resolved)), "paths": taint(paths)}
    out.update({name: taint(value) for name, value in module_vars.items()})
    return out


def _template_entries(req: BuildRequest, plan: Plan, collected: Collected,
                      cache: BuildCache) -> list[Entry]:
    from mkkdumprd.assemble.templates import environment, render

    tdir = req.templates_dir or data_dir("templates")
    init_scripts = sorted(t.dest for m in plan.modules for t in m.templates
                          if PurePosixPath(t.dest).parent == PurePosixPath(layout.INIT_D))
    ctx = template_context(req.config, plan.target, kver=req.kver, arch=req.arch,
                           found_binaries=collected.found, init_scripts=init_scripts,
                           modules=plan.names, kernel_modules=collected.kernel_modules,
                           timeout=req.timeout, rootfs=plan.rootfs,
                           module_vars=collected.template_vars,
                           more_targets=[t.resolved for t in plan.more_targets])
    bytecode_cache = cache.templates()
    out = []
    for m in plan.modules:
        env = environment([m.directory, tdir], bytecode_cache)
        for t in m.templates:
            if t.dest not in (layout.TARGET_SH, layout.NETWORK_SH):
                text = render(env, t.src, ctx)
                out.append(data_entry(t.dest, text, f"template {t.src} (module {m.name})",
                                      mode=t.mode))
                continue
            # a target's own script: once for each target this module serves
            for i, planned in enumerate(plan.targets):
                if not serves(m, planned, first=i == 0):
                    continue
                own = ctx if i == 0 else _per_target_context(
                    ctx, i, planned, collected.target_vars[i - 1])
                why = "" if i == 0 else f", target {i + 1}: {planned.resolved.describe()}"
                out.append(data_entry(layout.target_script(i, t.dest), render(env, t.src, own),
                                      f"template {t.src} (module {m.name}{why})", mode=t.mode))
    return out
