"""The report of `mkkdumprd test --vm`: which step failed, from real console shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mkkdumprd.vmtest import report
from mkkdumprd.vmtest.report import Report, classify

STARTED = "kdump: capture image by mkkdumprd 0.1.0 for 6.1.0-57-amd64, running 6.1.0-57-amd64\r\n"
BOOT = "[    0.000000] Linux version 6.1.0-57-amd64\r\n"


def test_saved_dump_has_no_failed_step() -> None:
    con = (BOOT + STARTED + "kdump: found UUID=x at /dev/vda\r\n"
           "kdump: dump saved to /var/crash/d/vmcore on UUID=x\r\n"
           "kdump: final action: rebooting\r\n")
    f = classify(con)
    assert f.failed_step is None
    assert f.detail == "dump saved to /var/crash/d/vmcore on UUID=x"


def test_image_that_never_ran_is_a_boot_failure_with_its_sign() -> None:
    con = (BOOT + "[    1.2] Initramfs unpacking failed: write error\r\n"
           "[    1.3] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    f = classify(con)
    assert f.failed_step == report.NOT_BOOTED
    assert "Initramfs unpacking failed" in f.detail
    assert any("Kernel panic" in line for line in f.evidence)


def test_oom_in_the_capture_kernel_is_named() -> None:
    f = classify(BOOT + "[ 2.0] Out of memory and no killable processes...\r\n")
    assert f.failed_step == report.NOT_BOOTED and "Out of memory" in f.detail


def test_expired_wait_with_a_missing_driver_names_the_driver() -> None:
    con = (STARTED + "kdump: waiting for UUID=x (0/10 s)\r\n"
           "kdump: waiting for UUID=x (5/10 s)\r\n"
           "kdump: error: gave up waiting for UUID=x after 10 s\r\n"
           "kdump: dump failed: dump target UUID=x did not appear within 10 s\r\n")
    f = classify(con, missing_drivers=("virtio_blk",))
    assert f.failed_step == report.DRIVER_MISSING
    assert "virtio_blk" in f.detail
    assert f.evidence == ("kdump: error: gave up waiting for UUID=x after 10 s",
                          "kdump: dump failed: dump target UUID=x did not appear within 10 s")
    f = classify(con)
    assert f.failed_step == report.TARGET_TIMEOUT
    assert f.detail == "dump failed: dump target UUID=x did not appear within 10 s"


def test_nfs_that_never_mounted_is_a_target_timeout() -> None:
    con = (STARTED + "kdump: waiting for NFS server 10.0.2.100 (attempt 1 failed: refused)\r\n"
           "kdump: dump failed: cannot mount NFS 10.0.2.100:/export within 15 s: refused\r\n")
    assert classify(con).failed_step == report.TARGET_TIMEOUT


def test_still_waiting_when_the_vm_was_stopped_is_a_target_timeout() -> None:
    con = STARTED + "kdump: waiting for UUID=x (85/90 s)\r\n"
    f = classify(con, vm_ended=False)
    assert f.failed_step == report.TARGET_TIMEOUT


def test_collector_failure() -> None:
    con = (STARTED + "kdump: found UUID=x at /dev/vda\r\n"
           "kdump: saving vmcore: makedumpfile -l -d 31\r\n"
           "kdump: dump failed: the core collector exited with status 1\r\n")
    f = classify(con)
    assert f.failed_step == report.COLLECTOR_FAILED
    assert f.evidence[-1] == "kdump: dump failed: the core collector exited with status 1"


def test_silence_after_the_image_started_is_incomplete() -> None:
    f = classify(STARTED + "kdump: saving vmcore: makedumpfile\r\n", vm_ended=False)
    assert f.failed_step == report.INCOMPLETE and "time limit" in f.detail


def test_escape_sequences_do_not_hide_lines() -> None:
    con = "\x1b[?7l\x1b[2J" + STARTED + "kdump: dump saved to /x/vmcore on y\r\n"
    assert classify(con).failed_step is None


def test_capture_memory_from_the_memstat_line() -> None:
    con = ("[    0.1] Memory: 98304K/262144K available (14339K kernel code)\r\n"
           "kdump: memstat: MemTotal=120000kB MinMemAvailable=70000kB samples=12\r\n")
    m = report.capture_memory(con)
    assert m == report.CaptureMemory(120000 * 1024, 50000 * 1024, 12)
    # The kernel's boot line alone is not a peak: nothing is reported.
    assert report.capture_memory(con.splitlines()[0]) is None
    assert report.capture_memory("nothing") is None


def test_capture_memory_in_json_and_text() -> None:
    r = _report(capture_memory=report.CaptureMemory(100 << 20, 40 << 20, 7))
    doc = r.as_json()
    assert doc["capture_memory_bytes"] == 40 << 20
    assert doc["capture_memory_total_bytes"] == 100 << 20
    assert "40 MiB at peak of 100 MiB" in r.render(), r.render()
    assert _report().as_json()["capture_memory_bytes"] is None


def _report(**kw: object) -> Report:
    base: dict[str, object] = dict(
        verdict="fail", failed_step=report.DRIVER_MISSING, detail="no virtio_blk",
        evidence=("kdump: error: gave up waiting for UUID=x after 10 s",),
        console_log="/w/console.log", kernel="/k", image="/i", target="ext4 UUID=x:/var/crash",
        stand_in="scratch ext4 disk", accel="tcg", guest_memory_mb=1024, crashkernel="144M",
        seconds=61.04)
    base.update(kw)
    return Report(**base)  # type: ignore[arg-type]


def test_json_has_every_key_and_round_trips() -> None:
    doc = _report(panic_to_saved_s=12.345).as_json()
    assert tuple(doc) == report.JSON_KEYS
    assert doc["panic_to_saved_s"] == 12.3 and doc["seconds"] == 61.0
    assert json.loads(json.dumps(doc)) == doc


def test_human_report_of_a_failure_shows_the_step_the_lines_and_the_log() -> None:
    text = _report().render()
    assert text.splitlines()[0] == f"FAIL: {report.DRIVER_MISSING}"
    assert "    kdump: error: gave up waiting for UUID=x after 10 s" in text
    assert "console log:   /w/console.log" in text


def test_human_report_of_a_pass() -> None:
    r = _report(verdict="pass", failed_step=None, detail="dump saved", vmcore_bytes=3 << 20,
                panic_to_saved_s=9.0, crash_lines=("sysrq: Trigger a crash",),
                measure={"minimum_mb": 128, "live_mb": None, "recommended": "144M",
                         "low_mb": 64, "high_mb": 256, "step_mb": 64, "probes": [{}, {}]})
    text = r.render()
    assert r.passed and text.startswith("PASS")
    assert "vmcore:        3 MiB (3145728 bytes)" in text
    assert "panic->saved:  9.0 s" in text
    assert "smallest crashkernel= that dumped: 128M" in text and "reserves none" in text
    assert "kdump: error" not in text       # evidence is shown for failures


@pytest.mark.parametrize("step", report.STEPS)
def test_every_step_renders(step: str) -> None:
    assert _report(failed_step=step).render().startswith(f"FAIL: {step}")


# -- the crashkernel= bisection (vmtest/measure.py) ---------------------------------------

@pytest.mark.parametrize("threshold", [64, 80, 96, 144, 500, 1000])
@pytest.mark.parametrize("guess", [None, 64, 96, 144, 512])
def test_minimum_finds_the_threshold(threshold: int, guess: int | None) -> None:
    from mkkdumprd.vmtest.measure import minimum

    tried: list[int] = []

    def run(mb: int) -> bool:
        tried.append(mb)
        return mb >= threshold

    found = minimum(run, 64, 512, 16, guess)
    want = next((v for v in range(64, 513, 16) if v >= threshold), None)
    assert found == want
    assert len(tried) == len(set(tried)) and len(tried) <= 8


def test_grid_guess_is_on_the_grid() -> None:
    from mkkdumprd.vmtest.measure import grid_guess

    assert grid_guess(16, 144, 128, 144) == 144
    assert grid_guess(16, 144, 128, 200) == 144
    assert grid_guess(16, 144, 128, 100) == 16
    assert grid_guess(64, 512, 16, 150) == 144
    assert grid_guess(64, 512, 16, 10) == 64


def test_measure_reuses_the_known_proof_and_records_probes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mkkdumprd.vmtest import measure as m
    from mkkdumprd.vmtest.run import Proof

    booted: list[str] = []

    def fake_prove(p: Proof) -> Report:
        booted.append(p.crashkernel)
        (p.workdir / "first-stage.img").parent.mkdir(parents=True)
        (p.workdir / "first-stage.img").write_bytes(b"x")
        ok = int(p.crashkernel.removesuffix("M")) >= 100
        return _report(verdict="pass" if ok else "fail",
                       failed_step=None if ok else report.NOT_LOADED,
                       console_log=str(p.workdir / "console.log"))

    monkeypatch.setattr(m, "prove", fake_prove)
    proof = Proof(kernel=tmp_path / "k", image=tmp_path / "i", workdir=tmp_path,
                  crashkernel="144M")
    main = _report(verdict="pass", failed_step=None)
    found = m.measure(proof, 16, 144, 64, 144, lambda _: None, known={144: main})
    assert found["minimum_mb"] == 144
    assert booted == ["80M"]                # 144 reused; 80 fails; 16 need not be tried
    assert [p["crashkernel_mb"] for p in found["probes"]] == [144, 80]
    assert not (tmp_path / "crashkernel-80M" / "first-stage.img").exists()


def test_measure_compares_with_the_live_reservation() -> None:
    m = {"minimum_mb": 128, "live_mb": 96, "recommended": "144M", "low_mb": 64,
         "high_mb": 256, "step_mb": 32, "probes": []}
    text = _report(measure=m).render()
    assert "this machine reserves 96M" in text
    assert "0.75 x the smallest that dumped: TOO SMALL" in text
    text = _report(measure={**m, "live_mb": 256}).render()
    assert "2.00 x the smallest that dumped: enough" in text
