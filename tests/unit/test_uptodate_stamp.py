"""The up-to-date fast path (mkkdumprd/uptodate/): a stamp is written only by a full check
that found the image current, replayed only while every observation holds, and any change
a full check could see makes it fall through to the full path. Real builds from a small
sysroot (the host's busybox and makedumpfile, fake `.ko` files), run through the entry
point in this process (mkkdumprd/__main__.py), and one in a subprocess for the imports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mkkdumprd.__main__ as entry
from mkkdumprd.assemble.cache import ENV
from mkkdumprd.uptodate import observations, recorder, stamp
from tests.support.fake_kmod import write_depmod_text, write_module
from tests.support.fake_machine import fake_machine
from tests.support.sysroot import make_sysroot

KVER = "9.9.9-stamp"
MODULES = {"kernel/fs/ext4/ext4.ko": [], "kernel/drivers/block/virtio_blk.ko": []}
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (shutil.which("busybox") and shutil.which("makedumpfile")),
    reason="needs the host's busybox and makedumpfile")


class Site:
    """A sysroot with a module tree, a kdump.conf, an image path; `argv` builds it."""

    def __init__(self, tmp: Path) -> None:
        bins = [p for p in (shutil.which("busybox"), shutil.which("makedumpfile")) if p]
        self.root = make_sysroot(tmp / "root", bins)
        self.kmoddir = tmp / "modules" / KVER
        for rel in MODULES:
            write_module(self.kmoddir, rel, {"name": Path(rel).stem, "license": "GPL"})
        write_depmod_text(self.kmoddir, MODULES)
        self.module = self.kmoddir / "kernel/drivers/block/virtio_blk.ko"
        self.conf = tmp / "kdump.conf"
        self.conf.write_text("ext4 /dev/vda\npath /var/crash\n")
        self.image = tmp / "kdump.img"
        self.cache = tmp / "cache"

    def argv(self, *more: str, hostonly: bool = False) -> list[str]:
        return ["build", "--sysroot", str(self.root), "--kver", KVER, "--kmoddir",
                str(self.kmoddir), "--arch", "x86_64", "-c", str(self.conf),
                "-o", str(self.image),
                *(() if hostonly else ("--no-hostonly", "--add-drivers", "virtio_blk")),
                *more]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    s = Site(tmp_path)
    monkeypatch.setenv(ENV, str(s.cache))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stamp, "entry_argv", None)
    # The files were written a moment ago: not racy for these tests (test_racy_files_...).
    monkeypatch.setattr(stamp, "RACY_NS", 0)
    monkeypatch.setattr(stamp, "RACY_COARSE_NS", 0)
    return s


def run(argv: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> tuple[bool, int, str]:
    """(whether the stamp held, exit status, stdout) of `mkkdumprd ARGV` via the entry."""
    fast = stamp.current_output(argv) is not None
    monkeypatch.setattr(sys, "argv", ["mkkdumprd", *argv])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    code = exited.value.code
    return fast, 0 if code is None else int(code), capsys.readouterr().out


def stamped(site: Site, argv: list[str], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> str:
    """Build (or check), check with no stamp (writes one), check again (replays it): the
    output."""
    assert run(argv, capsys, monkeypatch)[1] == 0
    path = stamp.stamp_path(stamp.key(argv))
    assert path is not None
    Path(path).unlink(missing_ok=True)
    full = run(argv, capsys, monkeypatch)
    assert full[:2] == (False, 0) and full[2] in ("", f"up to date: {site.image}\n")
    fast = run(argv, capsys, monkeypatch)
    assert fast == (True, 0, full[2])     # same output and status as the full check
    return full[2]


def test_fast_path_prints_what_the_full_check_prints(site: Site, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert stamped(site, site.argv(), capsys, monkeypatch) == f"up to date: {site.image}\n"
    assert stamped(site, site.argv("-q"), capsys, monkeypatch) == ""


def _same_mtime_new_ctime(p: Path) -> None:
    st = p.stat()
    p.write_bytes(p.read_bytes())
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_mtime_ns == st.st_mtime_ns and p.stat().st_ino == st.st_ino


def _replace_same_bytes(p: Path) -> None:
    tmp = p.with_name(p.name + ".new")
    shutil.copy2(p, tmp)
    os.replace(tmp, p)


CHANGES: dict[str, Callable[[Site, pytest.MonkeyPatch], object]] = {
    "module same mtime, new ctime": lambda s, m: _same_mtime_new_ctime(s.module),
    "module rewritten": lambda s, m: s.module.write_bytes(s.module.read_bytes() + b"\0"),
    "config edited": lambda s, m: s.conf.write_text("ext4 /dev/vdb\npath /var/crash\n"),
    "config same bytes, new mtime": lambda s, m: os.utime(s.conf, ns=(1, 1)),
    "image replaced by the same bytes": lambda s, m: _replace_same_bytes(s.image),
    "image truncated": lambda s, m: os.truncate(s.image, s.image.stat().st_size - 1),
    "sidecar rewritten": lambda s, m: _same_mtime_new_ctime(Path(f"{s.image}.sha256")),
    "sidecar removed": lambda s, m: Path(f"{s.image}.sha256").unlink(),
    "env var": lambda s, m: m.setenv("SOURCE_DATE_EPOCH", "1"),
    "cache dir": lambda s, m: m.setenv(ENV, str(s.cache) + "2"),
    "argv": lambda s, m: s.argv("--timeout", "91"),
    "cwd": lambda s, m: m.chdir(s.root),
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_falls_through(site: Site, change: str,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    argv = site.argv("-q")
    stamped(site, argv, capsys, monkeypatch)
    changed = CHANGES[change](site, monkeypatch)
    argv = changed if isinstance(changed, list) else argv
    assert stamp.current_output(argv) is None
    # The full path runs and stamps again (or rebuilds, when the change was real).
    assert run(argv, capsys, monkeypatch)[:2] == (False, 0)


def test_entries_added_beside_the_inputs_do_not_matter(
        site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory the check only looked through is compared by what it is, not by its
    times: files coming and going beside the inputs (as in /etc or /tmp) keep the stamp;
    the directory replaced by another, or its mode changed, does not."""
    argv = site.argv("-q")
    stamped(site, argv, capsys, monkeypatch)
    folder = site.conf.parent
    (folder / "unrelated").write_text("x")
    (folder / "unrelated").unlink()
    (folder / "subdir").mkdir()
    os.utime(folder, ns=(1, 1))
    assert stamp.current_output(argv) is not None
    folder.chmod(0o750)
    assert stamp.current_output(argv) is None


def test_the_input_directories_are_listed(site: Site, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """modules.d and templates are listed: a file added there is "added" to the full check
    (the listing's fingerprint: test_recorder_sees_every_door)."""
    argv = site.argv("-q")
    stamped(site, argv, capsys, monkeypatch)
    rec = stamp.decode(Path(_stamp_file(site)).read_bytes(), stamp.key(argv))
    assert rec is not None
    listed = {os.fsdecode(p) for kind, p, _ in rec[1] if kind == "list"}
    assert any(p.endswith("/modules.d") for p in listed)
    assert any(p.endswith("/templates") for p in listed)


def _stamp_file(site: Site) -> str:
    found = [p for p in site.cache.iterdir() if p.name.startswith("uptodate-")]
    assert len(found) >= 1
    return str(max(found, key=lambda p: p.stat().st_mtime_ns))


def test_host_only_mountinfo_content_change(site: Site, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A host-only build on a fake machine whose /proc is taken for the real one: the
    mountinfo is recorded by content, so a new mtime alone holds and new text does not."""
    fake_machine(site.root)
    site.conf.write_text("path /srv/dump/crash\n")
    proc = os.fsencode(site.root / "proc")
    monkeypatch.setattr(observations, "_PSEUDO_ROOTS", (*observations._PSEUDO_ROOTS, proc))
    argv = site.argv("-q", hostonly=True)
    stamped(site, argv, capsys, monkeypatch)
    rec = stamp.decode(Path(_stamp_file(site)).read_bytes(), stamp.key(argv))
    assert rec is not None
    mountinfo = site.root / "proc/self/mountinfo"
    assert ("content", os.fsencode(mountinfo)) in {(k, p) for k, p, _ in rec[1]}
    os.utime(mountinfo, ns=(1, 1))
    assert stamp.current_output(argv) == ""
    with mountinfo.open("a") as f:
        f.write("41 22 0:6 / /mnt rw - tmpfs tmpfs rw\n")
    assert stamp.current_output(argv) is None


def test_force_and_force_rebuild_never_take_the_fast_path(
        site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    argv = site.argv("-q")
    stamped(site, argv, capsys, monkeypatch)
    assert stamp.current_output([*argv, "--force"]) is None
    assert run([*argv, "--force"], capsys, monkeypatch)[:2] == (False, 0)
    site.conf.write_text("ext4 /dev/vda\npath /var/crash\nforce_rebuild 1\n")
    before = site.image.stat().st_ino
    for _ in range(2):      # force_rebuild rebuilds every time, and is never stamped
        assert run(argv, capsys, monkeypatch)[:2] == (False, 0)
        assert site.image.stat().st_ino != before
        before = site.image.stat().st_ino


def test_a_stamp_others_could_write_is_not_read(site: Site, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    argv = site.argv("-q")
    stamped(site, argv, capsys, monkeypatch)
    path = _stamp_file(site)
    os.chmod(path, 0o622)
    assert stamp.current_output(argv) is None
    os.chmod(path, 0o600)
    assert stamp.current_output(argv) == ""
    os.chmod(site.cache, 0o777)
    assert stamp.current_output(argv) is None


def test_the_fast_path_imports_no_click_or_jinja2(site: Site, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    argv = site.argv()
    # PYTHON* variables are part of the stamp's key: the child needs PYTHONPATH, so the
    # stamp is made with the same value.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    stamped(site, argv, capsys, monkeypatch)
    env = dict(os.environ)
    probe = ("import runpy, sys\nsys.argv = ['mkkdumprd', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('mkkdumprd', run_name='__main__')\n"
             "finally:\n    sys.stderr.write(' '.join(sorted(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", probe, *argv], env=env, capture_output=True,
                       text=True, check=False, timeout=60)
    assert r.returncode == 0 and r.stdout == f"up to date: {site.image}\n"
    loaded = set(r.stderr.split())
    assert "mkkdumprd.uptodate.stamp" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("click", "jinja2", "hashlib")}
    assert "mkkdumprd.cli" not in loaded


# ---- the recorder ---------------------------------------------------------------------------

def test_recorder_sees_every_door(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f"
    f.write_text("x")
    (tmp_path / "link").symlink_to("d/f")
    rec = recorder.Recorder(ignore=(str(tmp_path / "ignored"),))
    with recorder.recording(rec):
        assert f.read_text() == "x"                         # io.open via pathlib
        assert (tmp_path / "missing").is_file() is False     # os.stat via pathlib
        assert os.path.islink(tmp_path / "link")             # os.lstat via os.path
        assert os.readlink(tmp_path / "link") == "d/f"
        assert os.access(f, os.R_OK)
        assert [e.name for e in os.scandir(tmp_path / "d")] == ["f"]
        with open(os.open(f, os.O_RDONLY), "rb") as g:       # os.open, then an fd
            g.read()
        assert not (tmp_path / "ignored").exists()
    assert os.stat is recorder._REAL["stat"]
    kinds = {(k, os.fsdecode(p)) for k, p in rec.seen}
    assert {("stat", str(f)), ("stat", str(tmp_path / "missing")),
            ("lstat", str(tmp_path / "link")), ("readlink", str(tmp_path / "link")),
            (f"access{os.R_OK}", str(f)), ("list", str(tmp_path / "d"))} <= kinds
    assert not any("ignored" in p for _, p in kinds)
    assert rec.taint is None
    assert stamp.holds([(k, p, fp) for (k, p), fp in rec.seen.items()])
    (tmp_path / "d" / "new").write_text("")
    assert not stamp.holds([("list", os.fsencode(tmp_path / "d"),
                             rec.seen[("list", os.fsencode(tmp_path / "d"))])])


@pytest.mark.parametrize("event", ["socket.getaddrinfo", "subprocess.Popen", "ctypes.dlopen"])
def test_what_cannot_be_replayed_taints(event: str) -> None:
    rec = recorder.Recorder()
    with recorder.recording(rec):
        sys.audit(event, "x")
    assert rec.taint is not None


def test_a_write_or_a_device_taints(tmp_path: Path) -> None:
    rec = recorder.Recorder()
    with recorder.recording(rec):
        (tmp_path / "w").write_text("x")
    assert rec.taint is not None and "writing" in rec.taint
    rec = recorder.Recorder()
    with recorder.recording(rec):
        Path("/dev/null").read_bytes()
    assert rec.taint is not None
    rec = recorder.Recorder()
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with recorder.recording(rec):
            os.close(os.open("w", os.O_RDONLY, dir_fd=d))
    finally:
        os.close(d)
    assert rec.taint is not None and "directory fd" in rec.taint


def test_every_thread_is_recorded(tmp_path: Path) -> None:
    """Any thread's look during the check is an observation (a thread already running
    counts too: nothing says it is not the check's), and its write a taint."""
    import threading

    f, g = tmp_path / "f", tmp_path / "g"
    f.write_text("x")
    go = threading.Event()

    def before() -> None:
        go.wait(10)
        g.write_text("y")

    early = threading.Thread(target=before)
    early.start()
    rec = recorder.Recorder()
    with recorder.recording(rec):
        t = threading.Thread(target=f.read_text)
        t.start()
        t.join()
        assert rec.taint is None
        go.set()
        early.join()
    assert ("stat", os.fsencode(f)) in rec.seen
    assert rec.taint is not None and "writing" in rec.taint


def test_a_recording_step_that_fails_never_reaches_the_caller(tmp_path: Path) -> None:
    rec = recorder.Recorder()
    with recorder.recording(rec):
        with pytest.raises(TypeError, match="float"):
            os.stat(3.5)  # type: ignore[arg-type]  # the real call's own error
        sys.audit("open", object(), "r", 0)     # an event the recorder cannot read
        assert (tmp_path / "x").exists() is False
    assert rec.taint is not None and rec.taint.startswith("not recorded")


def test_racy_files_are_not_stamped(site: Site, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within the timestamp granularity of the check could change again
    with the same identity: such a run writes no stamp (git's "racily clean")."""
    argv = site.argv("-q")
    assert run(argv, capsys, monkeypatch)[1] == 0
    site.conf.write_text(site.conf.read_text())   # content unchanged, ctime now
    monkeypatch.setattr(stamp, "RACY_NS", 3600 * 10**9)
    assert run(argv, capsys, monkeypatch) == (False, 0, "")
    assert not [p for p in site.cache.iterdir() if p.name.startswith("uptodate-")]


# ---- the stamp as untrusted input ------------------------------------------------------------

KEY = stamp.key(["build", "-q"])
GOOD = stamp.encode(KEY, "up to date: /x\n", [("stat", b"/nonexistent-mkkdumprd", "E2")])


def test_a_good_stamp_decodes() -> None:
    assert stamp.decode(GOOD, KEY) == ("up to date: /x\n",
                                      [("stat", b"/nonexistent-mkkdumprd", "E2")])
    assert stamp.holds(stamp.decode(GOOD, KEY)[1])  # type: ignore[index]
    assert stamp.decode(GOOD, KEY + b"x") is None
    assert stamp.decode(stamp.encode(KEY, "", []), KEY) is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=2000)
@given(data=st.binary(max_size=3000))
def test_fuzz_stamp_bytes(data: bytes) -> None:
    found = stamp.decode(data, KEY)
    if found is not None:
        stamp.holds(found[1])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=2000)
@given(cut=st.integers(0, len(GOOD)), junk=st.binary(max_size=40), at=st.integers(0, len(GOOD)))
def test_fuzz_damaged_stamps(cut: int, junk: bytes, at: int) -> None:
    for data in (GOOD[:cut], GOOD[:at] + junk + GOOD[at:]):
        found = stamp.decode(data, KEY)
        if found is not None:
            assert isinstance(found[0], str)
            stamp.holds(found[1])


def test_an_oversized_stamp_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "c"))
    (tmp_path / "c").mkdir(mode=0o700)
    path = stamp.stamp_path(stamp.key(["build"]))
    assert path is not None
    Path(path).write_bytes(GOOD + b"x" * stamp.MAX_BYTES)
    os.chmod(path, 0o600)
    assert stamp.current_output(["build"]) is None


def test_stamps_are_bounded_per_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "c"))
    monkeypatch.setattr(stamp, "MAX_STAMPS", 3)
    monkeypatch.setattr(stamp, "RACY_NS", 0)
    for i in range(5):
        assert stamp.save(["build", str(i)], "", {("stat", b"/nonexistent-mkkdumprd"): "E2"})
        os.utime(str(stamp.stamp_path(stamp.key(["build", str(i)]))), ns=(i, i))
    left = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(left) == 3
    k = stamp.key(["build", "4"])
    sources = [os.fsdecode(p) for kind, p, _ in stamp.decode(  # type: ignore[union-attr]
        Path(str(stamp.stamp_path(k))).read_bytes(), k)[1]]
    assert str(Path(stamp.__file__).resolve()) in sources  # the code, by identity
    assert stamp.current_output(["build", "4"]) == ""
    assert stamp.current_output(["build", "0"]) is None


def test_every_environment_variable_the_code_reads_is_keyed() -> None:
    """A variable read anywhere in mkkdumprd/ (besides the VM and loader code, which a
    build does not run) is in the stamp's key."""
    pattern = re.compile(r"""(?:environ\.get\(|getenv\(|environ\[)\s*["']([A-Z_][A-Z0-9_]*)""")
    names: set[str] = set()
    for p in (ROOT / "mkkdumprd").rglob("*.py"):
        if p.parts[-2] in ("vmtest", "loader"):
            continue
        names |= set(pattern.findall(p.read_text()))
    assert names, "the pattern found nothing: the scan is broken"
    names.add("MKKDUMPRD_CACHE_DIR")  # read through cache_location.ENV
    missing = {n for n in names
               if n not in stamp.ENV_NAMES and not n.startswith(stamp.ENV_PREFIXES)}
    assert not missing
