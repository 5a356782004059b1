"""The shipped hook scripts, run as their callers run them, on a fake root.

kernel-install's plugin gets `add KVER ENTRY_DIR KERNEL_IMAGE` / `remove KVER ENTRY_DIR` and
the KERNEL_INSTALL_* environment; Debian's post{inst,rm}.d hooks get `KVER
/boot/vmlinuz-KVER` and DEB_MAINT_PARAMS. mkkdumprd is a recording stand-in (named through
hooks.conf) so each test sees the exact command a hook runs and can make it fail; the real
mkkdumprd under a real apt is tests/vm/test_debian_chroot.py. Whatever happens, a hook
exits 0. Also: the systemd unit and generator, and `mkkdumprd install-integration`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkkdumprd.cli import main
from mkkdumprd.resources import data_dir

PKG = data_dir("packaging")
PLUGIN = PKG / "kernel-install/60-mkkdumprd.install"
POSTINST = PKG / "debian/postinst.d/mkkdumprd"
POSTRM = PKG / "debian/postrm.d/mkkdumprd"
GENERATOR = PKG / "systemd/mkkdumprd-generator"
UNIT = PKG / "systemd/mkkdumprd.service"
KVER = "6.1.0-99-amd64"
BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# Records its arguments; writes the image where `mkkdumprd build` would (FAKE_FAIL: fails).
FAKE = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [ -n "${FAKE_FAIL-}" ]; then
    echo "mkkdumprd: error: something is wrong with the target" >&2
    exit 2
fi
kver= sysroot=
while [ $# -gt 0 ]; do
    case "$1" in --kver) kver=$2; shift ;; --sysroot) sysroot=$2; shift ;; esac
    shift
done
echo image > "$sysroot/boot/initramfs-${kver}kdump.img"
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / f"lib/modules/{KVER}").mkdir(parents=True)
    (r / "boot").mkdir()
    (r / f"boot/vmlinuz-{KVER}").write_bytes(b"MZ")
    fake = tmp_path / "bin/mkkdumprd"
    fake.parent.mkdir()
    fake.write_text(FAKE)
    fake.chmod(0o755)
    (r / "etc/mkkdumprd").mkdir(parents=True)
    (r / "etc/mkkdumprd/hooks.conf").write_text(f"MKKDUMPRD={fake}\n")
    return r


def _run(script: Path, root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": BASE_PATH, "MKKDUMPRD_ROOT": str(root),
            "FAKE_LOG": str(root.parent / "calls"), **env}
    return subprocess.run([str(script), *args], env=full, capture_output=True, text=True,
                          check=False)


def AUTO(root: Path) -> str:
    """auto_reset_crashkernel's call after every build (the CLI decides whether to act)."""
    return f"crashkernel apply --auto --kver {KVER} --root {root}"


def _calls(root: Path) -> list[str]:
    log = root.parent / "calls"
    return log.read_text().splitlines() if log.exists() else []


def _kernel_install_env(root: Path, verbose: str = "0") -> dict[str, str]:
    return {"KERNEL_INSTALL_MACHINE_ID": "0123456789abcdef0123456789abcdef",
            "KERNEL_INSTALL_ENTRY_TOKEN": "0123456789abcdef0123456789abcdef",
            "KERNEL_INSTALL_LAYOUT": "bls", "KERNEL_INSTALL_BOOT_ROOT": str(root / "boot"),
            "KERNEL_INSTALL_IMAGE_TYPE": "pe", "KERNEL_INSTALL_INITRD_GENERATOR": "dracut",
            "KERNEL_INSTALL_STAGING_AREA": str(root.parent / "staging"),
            "KERNEL_INSTALL_VERBOSE": verbose}


def _entry_dir(root: Path) -> str:
    return str(root / f"boot/0123456789abcdef0123456789abcdef/{KVER}")


def test_scripts_are_posix_sh_and_executable() -> None:
    for script in (PLUGIN, POSTINST, POSTRM, GENERATOR):
        assert os.access(script, os.X_OK), script
        assert script.read_text().startswith("#!/bin/sh\n")
        subprocess.run(["sh", "-n", str(script)], check=True)
        if shutil.which("dash"):
            subprocess.run(["dash", "-n", str(script)], check=True)


def test_kernel_install_add_builds_and_remove_deletes(root: Path) -> None:
    env = _kernel_install_env(root, verbose="1")
    r = _run(PLUGIN, root, "add", KVER, _entry_dir(root), f"/boot/vmlinuz-{KVER}", **env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert _calls(root) == [f"build --kver {KVER} --quiet --sysroot {root}", AUTO(root)]
    assert f"building the kdump capture image for {KVER}" in r.stdout
    image = root / f"boot/initramfs-{KVER}kdump.img"
    assert image.is_file()
    state = root / f"var/lib/mkkdumprd/initramfs-{KVER}kdump.img"
    state.parent.mkdir(parents=True)
    state.write_text("old image from a read-only /boot\n")
    other = root / "boot/initramfs-6.1.0-98-amd64kdump.img"
    other.write_text("another kernel's\n")
    record = image.with_name(image.name + ".sha256")
    record.write_text("digest record\n")
    for _ in range(2):      # idempotent: the second remove finds nothing and is fine
        r = _run(PLUGIN, root, "remove", KVER, _entry_dir(root), **env)
        assert r.returncode == 0 and r.stderr == "", r.stderr
    assert not image.exists() and not state.exists() and other.exists()
    assert not record.exists()
    assert (root / f"boot/vmlinuz-{KVER}").exists()


def test_kernel_install_quiet_unless_verbose(root: Path) -> None:
    r = _run(PLUGIN, root, "add", KVER, _entry_dir(root), f"/boot/vmlinuz-{KVER}",
             **_kernel_install_env(root))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_failed_build_warns_and_exits_zero(root: Path) -> None:
    for script, args in ((PLUGIN, ("add", KVER, _entry_dir(root), f"/boot/vmlinuz-{KVER}")),
                         (POSTINST, (KVER, f"/boot/vmlinuz-{KVER}"))):
        r = _run(script, root, *args, FAKE_FAIL="1", **_kernel_install_env(root))
        assert r.returncode == 0
        assert "mkkdumprd: error: something is wrong with the target" in r.stderr
        assert f"mkkdumprd: warning: could not build the kdump capture image for {KVER}" \
            in r.stderr
    assert len(_calls(root)) == 4      # each: the build, then auto_reset_crashkernel's apply


def test_nothing_without_modules_dir_or_mkkdumprd_or_when_disabled(root: Path) -> None:
    add = ("add", "6.1.0-1-amd64", _entry_dir(root), "/boot/vmlinuz-6.1.0-1-amd64")
    assert _run(PLUGIN, root, *add).returncode == 0                  # no modules dir
    assert _run(POSTINST, root, "6.1.0-1-amd64").returncode == 0
    conf = root / "etc/mkkdumprd/hooks.conf"
    saved = conf.read_text()
    conf.write_text(saved + "MKKDUMPRD_HOOKS=no\n")
    for script, args in ((PLUGIN, ("add", KVER, _entry_dir(root), "x")),
                         (POSTINST, (KVER,))):
        r = _run(script, root, *args)
        assert (r.returncode, r.stderr) == (0, "")
    conf.write_text(f"MKKDUMPRD={root}/nonexistent/mkkdumprd\n")       # not installed
    (root / f"boot/initramfs-{KVER}kdump.img").write_text("kept\n")
    for script, args in ((PLUGIN, ("add", KVER, _entry_dir(root), "x")), (POSTINST, (KVER,)),
                         (PLUGIN, ("remove", KVER, _entry_dir(root))), (POSTRM, (KVER,))):
        r = _run(script, root, *args)
        assert (r.returncode, r.stderr) == (0, ""), script
    assert _calls(root) == []
    assert (root / f"boot/initramfs-{KVER}kdump.img").exists()


def test_found_on_path_without_hooks_conf(root: Path) -> None:
    (root / "etc/mkkdumprd/hooks.conf").unlink()
    bindir = root.parent / "bin"
    r = _run(POSTINST, root, KVER, f"/boot/vmlinuz-{KVER}", PATH=f"{bindir}:{BASE_PATH}")
    assert r.returncode == 0, r.stderr
    assert _calls(root) == [f"build --kver {KVER} --quiet --sysroot {root}", AUTO(root)]


def test_build_args_from_hooks_conf(root: Path) -> None:
    with (root / "etc/mkkdumprd/hooks.conf").open("a") as f:
        f.write('BUILD_ARGS="--no-hostonly --add-drivers virtio_blk"\n')
    r = _run(POSTINST, root, KVER, f"/boot/vmlinuz-{KVER}")
    assert r.returncode == 0, r.stderr
    assert _calls(root) == [f"build --kver {KVER} --quiet --sysroot {root} --no-hostonly "
                            "--add-drivers virtio_blk", AUTO(root)]


@pytest.mark.parametrize("params, runs", [
    ("configure 6.1.0-99-amd64", True),
    ("'configure' ''", True),
    ("abort-upgrade 6.1.0-98-amd64", False),
    ("", True),
])
def test_debian_postinst_only_on_configure(root: Path, params: str, runs: bool) -> None:
    r = _run(POSTINST, root, KVER, f"/boot/vmlinuz-{KVER}", DEB_MAINT_PARAMS=params)
    assert (r.returncode, r.stderr) == (0, "")
    assert bool(_calls(root)) is runs


def test_debian_postrm_deletes_both_places(root: Path) -> None:
    images = [root / f"boot/initramfs-{KVER}kdump.img",
              root / f"var/lib/mkkdumprd/initramfs-{KVER}kdump.img"]
    for img in images:
        img.parent.mkdir(parents=True, exist_ok=True)
        img.write_text("x")
        img.with_name(img.name + ".sha256").write_text("digest record")
    keep = root / "boot/initramfs-6.1.0-99-amd64.img"       # the system's own initrd
    keep.write_text("system initrd")
    for _ in range(2):
        r = _run(POSTRM, root, KVER, f"/boot/vmlinuz-{KVER}", DEB_MAINT_PARAMS="remove")
        assert (r.returncode, r.stderr) == (0, "")
    assert not any(img.exists() for img in images) and keep.exists()
    assert not any(img.with_name(img.name + ".sha256").exists() for img in images)
    # a hostile or empty version never becomes a wildcard or a path
    for bad in ("", "../../etc", "*"):
        assert _run(POSTRM, root, bad).returncode == 0
    assert keep.exists()


@pytest.mark.parametrize("conf, wants", [
    ("nfs server:/export\npath /crash\n", True),
    ("# ssh old@host\nssh kdump@10.0.0.1\n", True),
    ("  nfs4 server:/export\n", True),
    ("ext4 UUID=abc\n#nfs x:/y\n", False),
    ("path /var/crash\ncore_collector makedumpfile -l\n", False),
    (None, False),
])
def test_generator_pulls_network_online_for_network_targets(tmp_path: Path, conf: str | None,
                                                            wants: bool) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    if conf is not None:
        (root / "etc/kdump.conf").write_text(conf)
    out = tmp_path / "gen"
    r = subprocess.run([str(GENERATOR), str(out), str(out), str(out)],
                       env={"PATH": BASE_PATH, "MKKDUMPRD_ROOT": str(root)},
                       capture_output=True, text=True, check=False)
    assert (r.returncode, r.stderr) == (0, "")
    link = out / "mkkdumprd.service.wants/network-online.target"
    assert link.is_symlink() is wants
    if wants:
        assert os.readlink(link).endswith("/systemd/system/network-online.target")


def test_unit_file() -> None:
    text = UNIT.read_text()
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in text.splitlines()
             if "=" in ln and not ln.startswith("#")}
    assert lines["Type"] == "oneshot" and lines["RemainAfterExit"] == "yes"
    assert "crashkernel" in lines["ExecCondition"] and "/proc/cmdline" in lines["ExecCondition"]
    assert {"local-fs.target", "network-online.target"} <= set(lines["After"].split())
    assert lines["ExecStart"].endswith("mkkdumprd start")
    assert lines["ExecStop"].endswith("mkkdumprd stop")
    assert lines["ExecReload"].endswith("mkkdumprd reload")
    assert lines["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("cmdline, runs", [
    ("BOOT_IMAGE=/vmlinuz root=/dev/vda1 crashkernel=256M quiet", True),
    ("crashkernel=1G-4G:192M,4G-:256M", True),
    ("root=/dev/vda1 quiet", False),
    ("root=/dev/vda1 nocrashkernel=1", False),
])
def test_exec_condition(tmp_path: Path, cmdline: str, runs: bool) -> None:
    line = next(ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecCondition="))
    script = line.split("'", 1)[1].rsplit("'", 1)[0]
    fake = tmp_path / "cmdline"
    fake.write_text(cmdline + "\n")
    r = subprocess.run(["sh", "-c", script.replace("/proc/cmdline", str(fake))], check=False)
    assert (r.returncode == 0) is runs


def test_install_integration_on_a_fake_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    exe = "/opt/mkkdumprd/bin/mkkdumprd"
    args = ["install-integration", "--root", str(root), "--mkkdumprd", exe]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert r.output.split() == [
        "installed", "/etc/systemd/system/mkkdumprd.service",
        "installed", "/etc/systemd/system/mkkdumprd-pstore.service",
        "installed", "/etc/systemd/system-generators/mkkdumprd-generator",
        "installed", "/etc/kernel/postinst.d/mkkdumprd",
        "installed", "/etc/kernel/postrm.d/mkkdumprd",
        "installed", "/etc/mkkdumprd/hooks.conf"]
    unit = (root / "etc/systemd/system/mkkdumprd.service").read_text()
    assert f"ExecStart={exe} start\n" in unit and "/usr/bin/mkkdumprd" not in unit
    assert (root / "etc/kernel/postinst.d/mkkdumprd").read_bytes() == POSTINST.read_bytes()
    assert os.stat(root / "etc/kernel/postinst.d/mkkdumprd").st_mode & 0o777 == 0o755
    assert (root / "etc/mkkdumprd/hooks.conf").read_text().endswith(f"\nMKKDUMPRD={exe}\n")
    r = CliRunner().invoke(main, args)
    assert r.output.split()[::2] == ["unchanged"] * 6, r.output
    # a packaged path needs no hooks.conf line and keeps the unit as shipped
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--only",
                                  "systemd", "--mkkdumprd", "/usr/bin/mkkdumprd"])
    assert r.output.split()[:2] == ["updated", "/etc/systemd/system/mkkdumprd.service"]
    assert (root / "etc/systemd/system/mkkdumprd.service").read_bytes() == UNIT.read_bytes()
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--remove"])
    assert r.exit_code == 0 and r.output.split()[::2] == ["removed"] * 5, r.output
    assert not (root / "etc/kernel/postinst.d/mkkdumprd").exists()


def test_install_integration_kernel_install_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/kernel/install.d").mkdir(parents=True)
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--mkkdumprd",
                                  "/usr/sbin/mkkdumprd"])
    assert r.exit_code == 0, r.output
    assert r.output.split() == ["installed", "/etc/kernel/install.d/60-mkkdumprd.install"]
    r = CliRunner().invoke(main, ["install-integration", "--root", str(tmp_path / "empty")])
    assert r.exit_code == 0 and "nothing to install" in r.output
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--mkkdumprd",
                                  "relative/mkkdumprd"])
    assert r.exit_code == 2 and "must be an absolute path" in r.output


@pytest.mark.parametrize("name", ["mkkdumprd.service", "mkkdumprd-pstore.service"])
def test_systemd_analyze_accepts_the_unit(tmp_path: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (package systemd)")
    unit = tmp_path / name
    # The packaged ExecStart path must exist for `verify`; point it at a real binary.
    unit.write_text((PKG / "systemd" / name).read_text().replace("/usr/bin/mkkdumprd",
                                                                 "/bin/true"))
    r = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, check=False)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if name in ln]
    assert problems == [], r.stdout + r.stderr


def test_install_integration_installs_the_hotplug_rule_beside_systemd(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/udev/rules.d").mkdir(parents=True)
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--mkkdumprd",
                                  "/usr/bin/mkkdumprd"])
    assert r.exit_code == 0, r.output
    assert "/etc/udev/rules.d/98-mkkdumprd.rules" in r.output.split()
    rule = root / "etc/udev/rules.d/98-mkkdumprd.rules"
    shipped = Path(__file__).resolve().parents[2] / \
        "mkkdumprd/data/packaging/udev/98-mkkdumprd.rules"
    assert rule.read_bytes() == shipped.read_bytes()
    assert 'ATTRS{crash_hotplug}=="1", GOTO="mkkdumprd_end"' in rule.read_text()
    r = CliRunner().invoke(main, ["install-integration", "--root", str(root), "--remove"])
    assert r.exit_code == 0 and not rule.exists()
