"""The loader's search rules, each checked on gcc-built fixtures against the real loader."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

import pytest

from mkkdumprd.elf.closure import ElfError, Resolver, resolve_closure
from mkkdumprd.host import Host
from tests.support.elf_fixtures import (
    build_lib,
    build_prog,
    ldd,
    ldd_missing,
    needs_gcc,
    retag,
    rpath,
    runpath,
)

pytestmark = needs_gcc
HOST = Host(Path("/"))


def real_closure(path: Path, **kw: object) -> set[str]:
    c = resolve_closure([str(path)], HOST, **kw)  # type: ignore[arg-type]
    return {str(HOST.resolve(p)) for p in c.objects}


def test_rpath_with_origin_matches_loader(tmp_path: Path) -> None:
    liba = build_lib(tmp_path / "app/lib/liba.so.1")
    prog = build_prog(tmp_path / "app/bin/prog", (liba,), rpath("$ORIGIN/../lib"))
    got = real_closure(prog)
    assert str(liba) in got
    assert got == ldd(prog)
    objs = resolve_closure([str(prog)], HOST).objects
    # ld.so opens it as $ORIGIN expanded, '..' kept, like ldd prints it.
    assert PurePosixPath(f"{tmp_path}/app/bin/../lib/liba.so.1") in objs
    assert objs[0] == PurePosixPath("/lib64/ld-linux-x86-64.so.2")


def test_runpath_found(tmp_path: Path) -> None:
    liba = build_lib(tmp_path / "r/liba.so")
    prog = build_prog(tmp_path / "prog", (liba,), runpath(str(tmp_path / "r")))
    assert str(liba) in real_closure(prog) == ldd(prog)


def _chain(tmp_path: Path, flags: tuple[str, ...]) -> Path:
    """prog -> libb (in d1) -> libc1 (only in d2); only prog names d1 and d2."""
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    libc1 = build_lib(d2 / "libc1.so")
    libb = build_lib(d1 / "libb.so", links=(libc1,))
    return build_prog(tmp_path / "prog", (libb,), flags)


def test_rpath_is_inherited_by_dependencies(tmp_path: Path) -> None:
    prog = _chain(tmp_path, rpath(str(tmp_path / "d1"), str(tmp_path / "d2")))
    got = real_closure(prog)
    assert str(tmp_path / "d2/libc1.so") in got
    assert got == ldd(prog)


def test_runpath_is_not_inherited(tmp_path: Path) -> None:
    prog = _chain(tmp_path, runpath(str(tmp_path / "d1"), str(tmp_path / "d2")))
    assert ldd_missing(prog) == ["libc1.so"]
    with pytest.raises(ElfError) as err:
        resolve_closure([str(prog)], HOST)
    msg = str(err.value)
    assert str(prog) in msg and "libc1.so" in msg and "libb.so" in msg
    assert "/usr/lib" in msg and "\n" not in msg


def test_rpath_ignored_when_runpath_present(tmp_path: Path) -> None:
    # Same soname in two dirs; the object names one by DT_RPATH, the other by DT_RUNPATH.
    in_r = build_lib(tmp_path / "viarpath/liba.so")
    in_u = build_lib(tmp_path / "viarunpath/liba.so")
    prog = build_prog(tmp_path / "prog", (in_r,),
                      (*rpath(str(tmp_path / "viarpath")),
                       f"-Wl,-soname,{tmp_path / 'viarunpath'}"))
    retag(prog, "DT_SONAME", 29)  # DT_RUNPATH
    assert str(in_u) in ldd(prog)
    assert real_closure(prog) == ldd(prog)


def test_rpath_of_object_with_runpath_is_not_inherited_either(tmp_path: Path) -> None:
    # libb has RPATH d2 and RUNPATH elsewhere: its RPATH is gone, so libc1 (in d2 only)
    # cannot be found for libb's own needs.
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    libc1 = build_lib(d2 / "libc1.so")
    libb = build_lib(d1 / "libb.so", links=(libc1,),
                     ldflags=(*rpath(str(d2)), f"-Wl,-soname,{tmp_path / 'nowhere'}"))
    retag(libb, "DT_SONAME", 29)
    prog = build_prog(tmp_path / "prog", (libb,), rpath(str(d1)))
    assert ldd_missing(prog) == ["libc1.so"]
    with pytest.raises(ElfError, match=r"libc1\.so"):
        resolve_closure([str(prog)], HOST)


def test_wrong_class_and_machine_skipped(tmp_path: Path) -> None:
    good = build_lib(tmp_path / "good/liba.so")
    for sub, offset, value in (("cls", 4, b"\x01"), ("mach", 18, (183).to_bytes(2, "little"))):
        bad = tmp_path / sub / "liba.so"
        bad.parent.mkdir()
        data = bytearray(good.read_bytes())
        data[offset:offset + len(value)] = value
        bad.write_bytes(bytes(data))
    prog = build_prog(tmp_path / "prog", (good,),
                      rpath(str(tmp_path / "cls"), str(tmp_path / "mach"), str(tmp_path / "good")))
    got = real_closure(prog)
    assert str(good) in got
    assert got == ldd(prog)


def test_not_elf_candidate_is_an_error_like_ld_so(tmp_path: Path) -> None:
    good = build_lib(tmp_path / "good/liba.so")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk/liba.so").write_text("INPUT(-lfoo)\n")
    prog = build_prog(tmp_path / "prog", (good,),
                      rpath(str(tmp_path / "junk"), str(tmp_path / "good")))
    with pytest.raises(ElfError, match="not an ELF file"):
        resolve_closure([str(prog)], HOST)


def test_lib_and_platform_tokens_match_loader(tmp_path: Path) -> None:
    resolver = Resolver(HOST)
    elf = resolver.elf("/usr/bin/true")
    assert elf is not None
    t = resolver.platform(elf, elf.interp)
    liba = build_lib(tmp_path / "x" / t.lib / "liba.so")
    libp = build_lib(tmp_path / "y" / t.platform / "libp.so")
    prog = build_prog(tmp_path / "prog", (liba, libp),
                      rpath(f"{tmp_path}/x/$LIB", f"{tmp_path}/y/${{PLATFORM}}"))
    expected = ldd(prog)  # the real loader agrees on what $LIB and $PLATFORM mean
    assert {str(liba), str(libp)} <= expected
    assert real_closure(prog) == expected


def test_first_loaded_copy_wins(tmp_path: Path) -> None:
    # prog finds libc1 via its RPATH d2; libx (in d1) has its own RUNPATH d3 with another
    # libc1, but the name is already loaded, so ld.so reuses the first one.
    c_d2 = build_lib(tmp_path / "d2/libc1.so")
    c_d3 = build_lib(tmp_path / "d3/libc1.so")
    libx = build_lib(tmp_path / "d1/libx.so", links=(c_d3,), ldflags=runpath(str(tmp_path / "d3")))
    prog = build_prog(tmp_path / "prog", (c_d2, libx),
                      rpath(str(tmp_path / "d2"), str(tmp_path / "d1")))
    got = real_closure(prog)
    assert str(c_d2) in got and str(c_d3) not in got
    assert got == ldd(prog)


def test_missing_file_and_not_elf(tmp_path: Path) -> None:
    with pytest.raises(ElfError, match="does not exist"):
        resolve_closure([str(tmp_path / "nope")], HOST)
    (tmp_path / "data").write_text("hello\n")
    with pytest.raises(ElfError, match="neither an ELF binary nor a #! script"):
        resolve_closure([str(tmp_path / "data")], HOST)


def test_script_pulls_interpreter_and_its_closure(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh -e\necho hi\n")
    objs = resolve_closure([str(script)], HOST).objects
    assert objs[0] == PurePosixPath("/bin/sh")
    assert {str(HOST.resolve(o)) for o in objs[1:]} == ldd(Path("/bin/sh"))
    if shutil.which("python3"):
        env_script = tmp_path / "p"
        env_script.write_text("#!/usr/bin/env python3\n")
        objs = resolve_closure([str(env_script)], HOST).objects
        assert PurePosixPath("/usr/bin/env") in objs
        assert any(o.name.startswith("python3") for o in objs)


def test_roots_excluded_and_union_deduplicated(tmp_path: Path) -> None:
    c = resolve_closure(["/usr/bin/true", "/usr/bin/false",
                         "/lib/x86_64-linux-gnu/libc.so.6"], HOST)
    reals = [HOST.resolve(o) for o in c.objects]
    assert len(reals) == len(set(reals))
    assert PurePosixPath("/usr/lib/x86_64-linux-gnu/libc.so.6") not in reals
    assert PurePosixPath("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") in reals


def test_dlopen_argument_adds_library_and_closure(tmp_path: Path) -> None:
    dep = build_lib(tmp_path / "l/libdep.so")
    build_lib(tmp_path / "l/libplugin.so", links=(dep,), ldflags=rpath("$ORIGIN"))
    prog = build_prog(tmp_path / "prog", (), rpath(str(tmp_path / "l")))
    got = real_closure(prog, dlopen=["libplugin.so"])
    assert {str(tmp_path / "l/libplugin.so"), str(dep)} <= got
    with pytest.raises(ElfError, match=r"libnothere\.so"):
        resolve_closure([str(prog)], HOST, dlopen=["libnothere.so"])


def _note_source(json_text: str) -> str:
    raw = json_text.encode()
    size = len(raw) + 1
    padded = (size + 3) & ~3
    body = ", ".join(str(b) for b in raw)
    return f"""
#include <stdint.h>
__attribute__((used, section(".note.dlopen"), aligned(4)))
static const struct {{ uint32_t namesz, descsz, type; char name[4]; unsigned char desc[{padded}]; }}
dlopen_note = {{ 4, {size}, 0x407c0c0a, "FDO", {{ {body} }} }};
"""


def test_note_dlopen_is_honoured(tmp_path: Path) -> None:
    rec = build_lib(tmp_path / "l/librec.so")
    build_lib(tmp_path / "l/libsug.so")
    json_text = ('[{"feature":"rec","description":"x","priority":"recommended",'
                 '"soname":["libmissing-alt.so","librec.so"]},'
                 '{"feature":"sug","priority":"suggested","soname":["libsug.so"]}]')
    prog = build_prog(tmp_path / "prog", (), rpath(str(tmp_path / "l")),
                      body=_note_source(json_text))
    elf = Resolver(HOST).elf(str(prog))
    assert elf is not None and len(elf.dlopen) == 2
    got = real_closure(prog)
    assert str(rec) in got
    assert str(tmp_path / "l/libsug.so") not in got


def test_note_dlopen_required_but_missing_is_an_error(tmp_path: Path) -> None:
    json_text = '[{"feature":"zz","priority":"required","soname":["libzz-none.so.9"]}]'
    prog = build_prog(tmp_path / "prog", body=_note_source(json_text))
    with pytest.raises(ElfError, match=r"libzz-none\.so\.9.*note\.dlopen"):
        resolve_closure([str(prog)], HOST)


def test_forced_machine_rejects_other_arch(tmp_path: Path) -> None:
    with pytest.raises(ElfError, match="EM_X86_64 binary, not 64-bit EM_AARCH64"):
        resolve_closure(["/usr/bin/true"], HOST, machine="aarch64")
    assert resolve_closure(["/usr/bin/true"], HOST, machine="x86_64").objects


def test_roots_of_another_arch_are_refused(tmp_path: Path) -> None:
    data = bytearray(Path("/usr/bin/true").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64
    foreign = tmp_path / "true-arm64"
    foreign.write_bytes(bytes(data))
    with pytest.raises(ElfError, match="like the first binary"):
        resolve_closure(["/usr/bin/true", str(foreign)], HOST)


def test_bare_names_are_looked_up_on_path() -> None:
    c = resolve_closure(["true"], HOST)
    assert c.roots[0].is_absolute() and c.roots[0].name == "true"
    with pytest.raises(ElfError, match="not on the PATH"):
        resolve_closure(["no-such-tool-xyz"], HOST)


def test_hwcaps_and_legacy_subdirs_searched_like_loader(tmp_path: Path) -> None:
    import os
    import subprocess

    r = Resolver(HOST)
    elf = r.elf("/usr/bin/true")
    assert elf is not None
    t = r.platform(elf, elf.interp)
    # The loader's own candidate list for an RPATH directory (LD_DEBUG=libs).
    lib = build_lib(tmp_path / "elsewhere/libhw.so")
    prog = build_prog(tmp_path / "prog", (lib,), rpath(str(tmp_path / "r")))
    lib.rename(tmp_path / "r-missing-libhw.so")
    dbg = subprocess.run([str(prog)], capture_output=True, text=True,
                         env={"LD_DEBUG": "libs", "PATH": "/usr/bin:/bin"}).stderr
    line = next(ln for ln in dbg.splitlines() if "(RPATH from file" in ln)
    theirs = line.split("search path=", 1)[1].split("\t", 1)[0].split(":")
    d = str(tmp_path / "r")
    ours = [f"{d}/glibc-hwcaps/{h}" for h in t.hwcaps]
    ours += [f"{d}/{s}" for s in t.legacy_subdirs] + [d]
    assert ours == theirs
    # And a library placed in the best subdirectory is the one both pick.
    best = (f"glibc-hwcaps/{t.hwcaps[0]}" if t.hwcaps else
            t.legacy_subdirs[0] if t.legacy_subdirs else "")
    if not best:
        pytest.skip("no hwcaps subdirectories on this machine")
    build_lib(tmp_path / "r/libhw.so")
    build_lib(tmp_path / "r" / best / "libhw.so")
    got = real_closure(prog)
    assert os.path.join(tmp_path, "r", best, "libhw.so") in got
    assert got == ldd(prog)


def test_origin_of_symlinked_program_is_its_real_dir(tmp_path: Path) -> None:
    # At exec the kernel gives ld.so /proc/self/exe, the real path; ldd would use the
    # symlink's directory instead, so the running program is the oracle here.
    import subprocess

    liba = build_lib(tmp_path / "real/lib/liba.so")
    prog = build_prog(tmp_path / "real/bin/prog", (liba,), rpath("$ORIGIN/../lib"))
    (tmp_path / "link").mkdir()
    (tmp_path / "link/prog").symlink_to(prog)
    assert subprocess.run([str(tmp_path / "link/prog")]).returncode == 0
    assert str(liba) in real_closure(tmp_path / "link/prog")


def test_script_with_missing_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text("#!/no/such/shell\n")
    with pytest.raises(ElfError, match=r"script for /no/such/shell, which does not exist"):
        resolve_closure([str(script)], HOST)
    script.write_text("#!\n")
    with pytest.raises(ElfError, match="names no interpreter"):
        resolve_closure([str(script)], HOST)
