"""The rpm: mkkdumprd/data/packaging/rpm/mkkdumprd.spec builds a noarch rpm here (Debian's
rpmbuild, with Fedora's macros from tests/support/rpm-fedora.macros); its file list, config files,
Requires and scriptlets are what Fedora's packaging guidelines ask. Installing it needs a
Fedora root, which these tests do not have."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.packages import SYSTEM_PATH, build_rpm

pytestmark = [
    pytest.mark.slow,  # ~15 s: a wheel build and rpmbuild
    pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="dev/setup installs rpm"),
]


@pytest.fixture(scope="module")
def rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rpm(tmp_path_factory.mktemp("rpm"))


def _q(rpm: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], env={"PATH": SYSTEM_PATH},
                          capture_output=True, text=True, check=True).stdout


def test_noarch_file_list_and_config(rpm: Path) -> None:
    assert _q(rpm, "--qf", "%{ARCH}") == "noarch"
    files = set(_q(rpm, "-l").split())
    for path in ("/usr/bin/mkkdumprd", "/usr/lib/systemd/system/mkkdumprd.service",
                 "/usr/lib/systemd/system/mkkdumprd-pstore.service",
                 "/usr/lib/systemd/system-generators/mkkdumprd-generator",
                 "/usr/lib/kernel/install.d/60-mkkdumprd.install", "/etc/kdump.conf",
                 "/usr/lib/udev/rules.d/98-mkkdumprd.rules",
                 "/usr/share/man/man8/mkkdumprd.8", "/usr/share/man/man5/kdump.conf.5",
                 "/usr/share/bash-completion/completions/mkkdumprd",
                 "/usr/share/zsh/site-functions/_mkkdumprd", "/var/lib/mkkdumprd"):
        assert path in files, path
    assert any(p.endswith("/mkkdumprd/cli/__init__.py") for p in files)
    assert not any(p.startswith("/etc/kernel/") for p in files)  # Debian's hooks: not here
    flags = dict(line.split() for line in
                 _q(rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]").splitlines()
                 if line.split()[1:])
    assert flags["/etc/kdump.conf"] == "cn"  # %config(noreplace)


def test_requires_name_fedoras_packages(rpm: Path) -> None:
    requires = _q(rpm, "-R")
    for name in ("python3-jinja2 >= 3.1.2", "python3-pyelftools >= 0.29",
                 "python3-libarchive-c >= 2.9", "python3-zstandard >= 0.20",
                 "python3-click >= 8.1.3", "busybox", "makedumpfile", "kexec-tools",
                 "libarchive"):
        assert name in requires.splitlines(), name
    assert _q(rpm, "--conflicts").split() == ["kdump-utils"]


def test_scriptlets_use_the_systemd_macros_and_never_fail(rpm: Path, tmp_path: Path) -> None:
    scripts = _q(rpm, "--scripts")
    units = "mkkdumprd.service mkkdumprd-pstore.service"
    assert f"install-system-units {units} || :" in scripts  # %systemd_post
    assert f"remove-system-units {units} || :" in scripts   # %systemd_preun
    for tag in ("POSTIN", "PREUN", "POSTUN", "POSTTRANS"):
        body = _q(rpm, "--qf", f"%{{{tag}}}")
        assert body and body != "(none)", tag
        script = tmp_path / tag
        script.write_text(body + "\n")
        subprocess.run(["sh", "-n", str(script)], check=True)
        if shutil.which("shellcheck"):
            subprocess.run(["shellcheck", "-s", "sh", "-S", "warning", str(script)], check=True)
