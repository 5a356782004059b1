"""The Debian package: `dpkg-buildpackage -us -uc -b` builds it from this tree, it holds
what the packaging table says (unit, generator, kernel hooks, man pages, completions,
/etc/kdump.conf as a conffile), depends on Debian's own packages, and lintian finds no
errors and no warnings (the two overridden tags are explained in
debian/mkkdumprd.lintian-overrides)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.packages import SYSTEM_PATH, build_deb

pytestmark = [
    pytest.mark.slow,  # ~40 s: dpkg-buildpackage + lintian
    pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None or
                       not Path("/usr/share/perl5/Debian/Debhelper/Buildsystem/pybuild.pm")
                       .exists(), reason="dev/setup installs the build dependencies"),
]

SHIPPED = (
    "./usr/bin/mkkdumprd",
    "./lib/systemd/system/mkkdumprd.service",
    "./lib/systemd/system/mkkdumprd-pstore.service",
    "./lib/systemd/system-generators/mkkdumprd-generator",
    "./usr/lib/kernel/install.d/60-mkkdumprd.install",
    "./etc/kernel/postinst.d/mkkdumprd",
    "./etc/kernel/postrm.d/mkkdumprd",
    "./etc/kdump.conf",
    "./lib/udev/rules.d/98-mkkdumprd.rules",
    "./usr/share/man/man8/mkkdumprd.8.gz",
    "./usr/share/man/man5/kdump.conf.5.gz",
    "./usr/share/bash-completion/completions/mkkdumprd",
    "./usr/share/zsh/vendor-completions/_mkkdumprd",
    "./usr/lib/python3/dist-packages/mkkdumprd/cli/__init__.py",
)


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_deb(tmp_path_factory.mktemp("deb"))


def _run(*argv: str) -> str:
    return subprocess.run(argv, env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"},
                          capture_output=True, text=True, check=True).stdout


def test_contents_and_conffiles(deb: Path, tmp_path: Path) -> None:
    listing = {line.split()[5] for line in _run("dpkg-deb", "-c", str(deb)).splitlines()}
    for path in SHIPPED:
        assert path in listing, path
    _run("dpkg-deb", "-e", str(deb), str(tmp_path / "control"))
    conffiles = (tmp_path / "control/conffiles").read_text().split()
    assert {"/etc/kdump.conf", "/etc/kernel/postinst.d/mkkdumprd",
            "/etc/kernel/postrm.d/mkkdumprd"} <= set(conffiles)
    scripts = {name: (tmp_path / "control" / name).read_text()
               for name in ("postinst", "prerm", "postrm")}
    # dh_installsystemd's parts: enabled on configure, never started in the transaction;
    # stopped on remove (our prerm), its state purged.
    assert "deb-systemd-helper enable 'mkkdumprd.service'" in scripts["postinst"] or \
        "deb-systemd-helper unmask 'mkkdumprd.service'" in scripts["postinst"]
    assert "deb-systemd-invoke start" not in scripts["postinst"]
    assert "deb-systemd-invoke stop mkkdumprd.service" in scripts["prerm"]
    # both units (mkkdumprd-pstore.service archives pstore at boot), in one helper call
    assert ("deb-systemd-helper purge 'mkkdumprd-pstore.service' 'mkkdumprd.service'"
            in scripts["postrm"])
    for name in scripts:
        subprocess.run(["sh", "-n", str(tmp_path / "control" / name)], check=True)
        if shutil.which("shellcheck"):
            subprocess.run(["shellcheck", "-s", "sh", "-S", "warning",
                            str(tmp_path / "control" / name)], check=True)


def test_depends_on_debians_own_packages(deb: Path) -> None:
    fields = _run("dpkg-deb", "-f", str(deb), "Depends", "Conflicts")
    depends = fields.split("Depends: ", 1)[1].split("\n", 1)[0]
    for name in ("python3-jinja2", "python3-pyelftools", "python3-libarchive-c",
                 "python3-zstandard", "python3-click", "busybox-static | busybox",
                 "makedumpfile", "kexec-tools"):
        assert name in depends, name
    assert "Conflicts: kdump-tools" in fields


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian not installed")
def test_lintian_finds_no_errors_or_warnings(deb: Path) -> None:
    r = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb)],
                       env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"},
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
