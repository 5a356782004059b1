"""install-integration --mkkdumprd PATH with hostile paths (issue 14 item 5).

Oracles: sh sources the written hooks.conf and must get PATH back with nothing run;
systemd-analyze verify must find the unit's executable at exactly PATH (created for real);
a parser following systemd.syntax(7)/systemd.service(5) must read every Exec word back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.errors import UsageError
from mkkdumprd.lifecycle.integration import HOOKS_CONF_HEADER, hooks_conf_text
from mkkdumprd.quoting import check_path, systemd_exec_word
from mkkdumprd.resources import data_dir

HOSTILE = [
    "my dir",
    "a;touch PWNED;b",
    "$(touch PWNED)",
    "`touch PWNED`",
    "it's \"quoted\"",
    "100%n",
    "$HOME ${HOME}",
    "back\\slash\\n",
    "ünï cödé",
    "*glob?[x]",
    "-dash",
    "a\\\"b'c",
]


# systemd accepts no quote or backslash in an executable's path: refused for the unit.
FOR_SYSTEMD = [p for p in HOSTILE if not any(c in p for c in "\\\"'")]


def _install(root: Path, exe: str, *only: str) -> None:
    kinds = [w for k in only for w in ("--only", k)]
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), *kinds,
                                  "--mkkdumprd", exe])
    assert r.exit_code == 0, r.output


def _systemd_words(line: str) -> list[str]:
    """systemd's extract_first_word(UNQUOTE|CUNESCAPE), then specifiers (%%), for Exec=."""
    words: list[str] = []
    i, n = 0, len(line)
    escapes = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "a": "\a",
               "b": "\b", "f": "\f", "r": "\r", "v": "\v", "s": " "}
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        word, quote = [], None
        while i < n:
            c = line[i]
            if quote is None and c in " \t":
                break
            if c == "\\":
                nxt = line[i + 1]
                assert nxt in escapes, f"unknown escape \\{nxt} in {line!r}"
                word.append(escapes[nxt])
                i += 2
                continue
            if quote is None and c in "\"'":
                quote = c
            elif c == quote:
                quote = None
            else:
                word.append(c)
            i += 1
        assert quote is None, f"unterminated quote in {line!r}"
        words.append(re.sub(r"%(.)", lambda m: m.group(1) if m.group(1) == "%" else
                            pytest.fail(f"specifier %{m.group(1)} in {line!r}"),
                            "".join(word)))
    return words


@pytest.mark.parametrize("part", HOSTILE)
def test_hooks_conf_parses_back_in_sh(tmp_path: Path, part: str) -> None:
    root = tmp_path / "root"
    exe = f"/opt/{part}/mkkdumprd"
    _install(root, exe, "debian")
    conf = root / "etc/mkkdumprd/hooks.conf"
    r = subprocess.run(["sh", "-c", '. "$1"; printf %s "$MKKDUMPRD"', "sh", str(conf)],
                       cwd=tmp_path, capture_output=True, text=True, check=True)
    assert r.stdout == exe and r.stderr == ""
    assert not list(tmp_path.rglob("PWNED"))
    assert conf.read_bytes().startswith(HOOKS_CONF_HEADER)


@pytest.mark.parametrize("part", FOR_SYSTEMD)
def test_unit_exec_lines_parse_back(tmp_path: Path, part: str) -> None:
    root = tmp_path / "root"
    exe = f"/opt/{part}/mkkdumprd"
    _install(root, exe, "systemd")
    unit = (root / "etc/systemd/system/mkkdumprd.service").read_text()
    execs = dict(re.findall(r"^(Exec(?:Start|Stop|Reload))=(.*)$", unit, re.M))
    assert {k: _systemd_words(v) for k, v in execs.items()} == {
        "ExecStart": [exe, "start"], "ExecStop": [exe, "stop"], "ExecReload": [exe, "reload"]}
    assert len(unit.splitlines()) == len(
        (data_dir("packaging") / "systemd/mkkdumprd.service").read_text().splitlines())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("part", FOR_SYSTEMD)
def test_systemd_analyze_finds_the_executable(tmp_path: Path, part: str) -> None:
    exe = tmp_path / "opt" / part / "mkkdumprd"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    root = tmp_path / "root"
    _install(root, str(exe), "systemd")
    unit = root / "etc/systemd/system/mkkdumprd.service"
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, check=False)
    out = r.stdout + r.stderr
    assert "not executable" not in out and "Invalid" not in out, out
    assert r.returncode == 0, out


@pytest.mark.parametrize("part", sorted(set(HOSTILE) - set(FOR_SYSTEMD)))
def test_paths_systemd_cannot_run_are_refused_before_writing(tmp_path: Path, part: str) -> None:
    root = tmp_path / "root"
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--only",
                                  "systemd", "--only", "debian", "--mkkdumprd",
                                  f"/opt/{part}/mkkdumprd"])
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and "quote or a backslash" in r.output
    assert not (root / "etc").exists()


@pytest.mark.parametrize("bad", ["relative/mkkdumprd", "/opt/dir/",
                                 "/opt/new\nExecStartPre=/bin/x/m", "/opt/tab\there",
                                 "/opt/esc\x1b[31m", "/opt/del\x7f"])
def test_unsafe_paths_are_refused_with_one_line(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--only",
                                  "systemd", "--mkkdumprd", bad])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    assert len(r.output.strip().splitlines()) == 1 and "--mkkdumprd" in r.output, r.output
    assert not (root / "etc/systemd/system/mkkdumprd.service").exists()
    with pytest.raises(UsageError):
        check_path(bad, "--mkkdumprd")


def test_systemd_word_forms() -> None:
    assert systemd_exec_word("/usr/bin/mkkdumprd", executable=True) == "/usr/bin/mkkdumprd"
    assert systemd_exec_word("/a b/$x%y", executable=True) == '"/a b/$x%%y"'
    assert systemd_exec_word("$x", executable=False) == '"$$x"'
    with pytest.raises(UsageError, match="control character"):
        systemd_exec_word("/a\nb", executable=True)


def test_hooks_conf_keeps_every_other_byte() -> None:
    old = (b"# mine\r\n\tBUILD_ARGS='--no-hostonly'  \n\xff\xfe latin-1 \xe9\n"
           b"  MKKDUMPRD=/old/one\nX=1\nMKKDUMPRD=/old/two\nlast line without newline")
    new = hooks_conf_text(old, "/opt/a b/mkkdumprd")
    assert new == (b"# mine\r\n\tBUILD_ARGS='--no-hostonly'  \n\xff\xfe latin-1 \xe9\n"
                   b"MKKDUMPRD='/opt/a b/mkkdumprd'\nX=1\nlast line without newline")
    # idempotent, and appended (after a newline) when absent
    assert hooks_conf_text(new, "/opt/a b/mkkdumprd") == new
    assert hooks_conf_text(b"X=1", "/o/m") == b"X=1\nMKKDUMPRD=/o/m\n"


def test_hooks_conf_symlink_is_written_through_and_units_symlinks_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/mkkdumprd").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    managed = tmp_path / "managed.conf"
    managed.write_bytes(b"BUILD_ARGS=--no-hostonly\n")
    managed.chmod(0o640)
    (root / "etc/mkkdumprd/hooks.conf").symlink_to(managed)
    (root / "etc/systemd/system/mkkdumprd.service").symlink_to("/dev/null")   # masked
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--only",
                                  "systemd", "--only", "debian", "--mkkdumprd", "/opt/x/m"])
    assert r.exit_code == 0, r.output
    assert "kept (a symlink) /etc/systemd/system/mkkdumprd.service" in r.output
    assert (root / "etc/mkkdumprd/hooks.conf").is_symlink()
    assert managed.read_bytes() == b"BUILD_ARGS=--no-hostonly\nMKKDUMPRD=/opt/x/m\n"
    assert managed.stat().st_mode & 0o777 == 0o640
    assert str((root / "etc/systemd/system/mkkdumprd.service").readlink()) == "/dev/null"
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--only",
                                  "systemd", "--remove"])
    assert r.exit_code == 0 and (root / "etc/systemd/system/mkkdumprd.service").is_symlink()


@pytest.mark.parametrize("kind", ["directory", "non-utf8"])
def test_odd_hooks_conf_is_one_line_or_preserved(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    conf = root / "etc/mkkdumprd/hooks.conf"
    (root / "var/lib/dpkg").mkdir(parents=True)
    if kind == "directory":
        conf.mkdir(parents=True)
    else:
        conf.parent.mkdir(parents=True)
        conf.write_bytes(b"# \xff\xfe\nBUILD_ARGS=x\n")
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--only",
                                  "debian", "--mkkdumprd", "/opt/x/m"])
    if kind == "directory":
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
        assert "hooks.conf is not a regular file" in r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
    else:
        assert r.exit_code == 0, r.output
        assert conf.read_bytes() == b"# \xff\xfe\nBUILD_ARGS=x\nMKKDUMPRD=/opt/x/m\n"
