"""crashkernel= written and read without surprises (issue 14 items 3, 13, 14):

- `apply --value` takes only the canonical grammar and names the offending character;
- the grub defaults file and kernel command line files are written through one helper
  per format (quoting.py), checked with /bin/sh as the oracle;
- /etc/kernel/cmdline keeps every byte that is not a crashkernel= word, is written through
  its symlink, and the tool's own earlier value is not "hand-set";
- parsing follows memparse/simple_strtoull: ASCII digits only, 64-bit wrap like the
  kernel, and what the kernel would then fail to reserve is reported as such.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mkkdumprd.arch import load_arch
from mkkdumprd.cli import main
from mkkdumprd.crashkernel import apply as ck
from mkkdumprd.crashkernel.grammar import GrammarError, check_value
from mkkdumprd.crashkernel.parse import CrashkernelInvalid, parse_crashkernel
from mkkdumprd.crashkernel.size import memparse, memparse_checked, strtoull
from mkkdumprd.host import Host
from mkkdumprd.quoting import FormatError, grub_append_line, kernel_word, sh_double_quoted
from tests.support.bounded import bounded_call

X86 = load_arch("x86_64")


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["crashkernel", *args])
    return r.exit_code, r.stdout, r.stderr


def _write(root: Path, rel: str, text: str) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# ---- item 3: the canonical grammar ---------------------------------------------------------

@pytest.mark.parametrize("value", [
    "256M", "256m@16M", "0x10000000", "1G-4G:192M,4G-64G:256M,64G-:512M", "1G-:256M@64M",
    "512M,high", "128M,low", "64M,cma", "1E",
])
def test_canonical_values_are_accepted(value: str) -> None:
    assert check_value(value) == value


@pytest.mark.parametrize(("value", "char"), [
    ("256M@0$(touch /tmp/PWN)", "'$' at character 7"),
    ("256M@0 init=/bin/sh", "' ' at character 7"),
    ("256M;reboot", "';' at character 5"),
    ("256M`id`", "'`' at character 5"),
    ("256M\ninit=/bin/sh", "'\\x0a' at character 5"),
    ("256M,high,low", "',' at character 5"),
    ("1G-4G:192M:x", "':' at character 11"),
    ("\u0661\u0662M", "'\u0661' at character 1"),
    ("256MiB", "'i' at character 5"),
    ("0256M", "'2' at character 2"),
])
def test_anything_else_is_refused_naming_the_character(value: str, char: str) -> None:
    with pytest.raises(GrammarError, match=re.escape(f"unexpected {char}")):
        check_value(value)


def test_apply_refuses_injection_and_writes_nothing(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    # a blank separates the words of a set, so the smuggled word is checked on its own
    for value, bad in (("256M@0$(touch /tmp/PWN)", "'$' at character 7"),
                       ("256M@0 init=/bin/sh", "crashkernel=init=/bin/sh: unexpected 'i'")):
        code, _, err = _cli("apply", "--root", str(tmp_path), "--value", value)
        assert code == 2, err
        assert bad in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "etc/default/grub.d").exists()


# ---- class (b): one helper per format ------------------------------------------------------

def test_kernel_word_quotes_spaces_and_refuses_what_cannot_be_written() -> None:
    assert kernel_word("crashkernel=256M") == "crashkernel=256M"
    assert kernel_word("foo=a b") == 'foo="a b"'
    assert kernel_word('foo="a b"') == 'foo="a b"'
    for bad in ("", "a\nb", "x=\x1b[0m", 'x=a"b', "a b=c", "=x", "x=\tb"):
        with pytest.raises(FormatError):
            kernel_word(bad)


def _source(text: str, var: str, before: str) -> str:
    """What /bin/sh makes of a grub defaults file (grub-mkconfig sources it)."""
    script = f'{var}={before}\n. "$1"\nprintf "%s" "${var}"\n'
    f = Path(os.environ.get("TMPDIR", "/tmp")) / f"mkkdumprd-grub-{os.getpid()}.cfg"
    f.write_text(text)
    try:
        return subprocess.run(["sh", "-c", script, "sh", str(f)], capture_output=True,
                              text=True, check=True).stdout
    finally:
        f.unlink()


def test_grub_line_is_what_sh_reads_back() -> None:
    line = grub_append_line("GRUB_CMDLINE_LINUX_DEFAULT", "crashkernel=1G-4G:192M,4G-:256M")
    assert line == ('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT '
                    'crashkernel=1G-4G:192M,4G-:256M"\n')
    assert _source(line, "GRUB_CMDLINE_LINUX_DEFAULT", "'quiet splash'") == \
        "quiet splash crashkernel=1G-4G:192M,4G-:256M"
    for bad in ("x=$(id)", "x=a;b", "x={a}", "x='a'", 'x="a b"', "x=a\\b", "x=`id`"):
        with pytest.raises(FormatError):
            grub_append_line("GRUB_CMDLINE_LINUX_DEFAULT", bad)
    with pytest.raises(FormatError):
        grub_append_line("GRUB; id", "x=1")


@settings(max_examples=100, deadline=5_000)
@given(st.text(max_size=40))
def test_sh_double_quoting_round_trips(text: str) -> None:
    text = text.replace("\0", "")
    out = subprocess.run(["sh", "-c", f'printf "%s" "{sh_double_quoted(text)}"'],
                         capture_output=True, check=True).stdout
    assert out == text.encode("utf-8", "surrogatepass")


def test_grub_d_file_is_golden(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    code, _, err = _cli("apply", "--root", str(tmp_path), "--value", "1G-4G:192M,4G-:256M")
    assert code == 0, err
    text = (tmp_path / "etc/default/grub.d/mkkdumprd.cfg").read_text()
    assert text == ("# Written by `mkkdumprd crashkernel apply`; run update-grub after "
                    "changing it.\n"
                    'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT '
                    'crashkernel=1G-4G:192M,4G-:256M"\n')
    assert _source(text, "GRUB_CMDLINE_LINUX_DEFAULT", "quiet") == \
        "quiet crashkernel=1G-4G:192M,4G-:256M"


# ---- item 14: /etc/kernel/cmdline, byte for byte ------------------------------------------

@pytest.mark.parametrize(("before", "after"), [
    ("root=UUID=1\tro  quiet\nsecond line\n",
     "root=UUID=1\tro  quiet crashkernel=192M\nsecond line\n"),
    ("root=UUID=1  crashkernel=128M\tro\n", "root=UUID=1  crashkernel=192M\tro\n"),
    ("a  crashkernel=1G\tb crashkernel=2G  c\n", "a  crashkernel=192M\tb  c\n"),
    ("  ro", "  ro crashkernel=192M\n"),
    ("", "crashkernel=192M\n"),
    ("foo.crashkernel=1 ro\n", "foo.crashkernel=1 ro crashkernel=192M\n"),
])
def test_kernel_cmdline_changes_only_crashkernel_words(tmp_path: Path, before: str,
                                                       after: str) -> None:
    p = _write(tmp_path, "/etc/kernel/cmdline", before)
    code, _, err = _cli("apply", "--root", str(tmp_path), "--value", "192M", "--force")
    assert code == 0, err
    assert p.read_text() == after
    # applying the same again changes nothing (a golden round trip)
    plan = ck.plan_apply(Host(tmp_path), "192M")
    assert not plan.needed


def test_kernel_cmdline_is_written_through_its_symlink(tmp_path: Path) -> None:
    real = _write(tmp_path, "/etc/kernel/cmdline.real", "ro quiet\n")
    link = tmp_path / "etc/kernel/cmdline"
    link.symlink_to("cmdline.real")
    code, out, err = _cli("apply", "--root", str(tmp_path), "--value", "192M")
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == "cmdline.real"
    assert real.read_text() == "ro quiet crashkernel=192M\n"
    assert "through the link" in out


def test_own_earlier_value_is_not_hand_set(tmp_path: Path) -> None:
    p = _write(tmp_path, "/etc/kernel/cmdline", "ro\n")
    assert _cli("apply", "--root", str(tmp_path), "--value", "192M")[0] == 0
    code, _, err = _cli("apply", "--root", str(tmp_path), "--value", "256M")
    assert code == 0, err
    assert p.read_text() == "ro crashkernel=256M\n"
    assert (tmp_path / "var/lib/mkkdumprd/crashkernel-applied").read_text() == "256M\n"
    # a value someone else wrote is still left alone
    p.write_text("ro crashkernel=512M\n")
    plan = ck.plan_apply(Host(tmp_path), "192M")
    assert not plan.needed and plan.kept == ("/etc/kernel/cmdline: crashkernel=512M",)


def test_grub_d_own_value_is_not_hand_set_either(tmp_path: Path) -> None:
    _write(tmp_path, "/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    assert _cli("apply", "--root", str(tmp_path), "--value", "192M")[0] == 0
    # someone copies our line into grub itself: it is still recognised as ours
    grub = tmp_path / "etc/default/grub"
    grub.write_text('GRUB_CMDLINE_LINUX_DEFAULT="quiet crashkernel=192M"\n')
    plan = ck.plan_apply(Host(tmp_path), "256M")
    assert plan.needed and not plan.kept


def test_boot_config_that_is_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "etc/kernel").mkdir(parents=True)
    os.mkfifo(tmp_path / "etc/kernel/cmdline")
    code, _, err = _cli("apply", "--root", str(tmp_path), "--value", "192M")
    assert code != 0 and "is a FIFO" in err


# ---- item 13: kernel-exact numbers ---------------------------------------------------------

def test_digits_are_ascii_only() -> None:
    assert strtoull("\u0661\u0662\u0663") == (0, 0)
    assert strtoull("\uff11") == (0, 0)
    assert memparse("1\u212a") == (1, 1)      # KELVIN SIGN is not "k"
    with pytest.raises(CrashkernelInvalid, match="memory value expected"):
        parse_crashkernel("crashkernel=\u0661\u0662\u0663M", 16 << 30, X86)
    code, _, err = _cli("parse", "--arch", "x86_64", "--mem", "\uff11G", "crashkernel=256M")
    assert code == 2 and "is not a size" in err


def test_overflow_wraps_like_the_kernel_and_is_flagged() -> None:
    # 2**64 + 1 wraps to 1; the suffix shift wraps too.
    assert memparse_checked("18446744073709551617") == (1, 20, True)
    assert memparse_checked("0x10000000000000001M") == (1 << 20, 20, True)
    assert memparse_checked("16E") == (0, 3, True)
    assert memparse_checked("15E") == (15 << 60, 3, False)
    res = parse_crashkernel("crashkernel=18446744073709551617M@1G", 16 << 30, X86)
    assert (res.size, res.offset) == (1 << 20, 1 << 30)
    assert any("does not fit in 64 bits" in n for n in res.notes)
    code, out, _ = _cli("parse", "--arch", "x86_64", "--mem", "16G",
                        "crashkernel=18446744073709551617M@1G")
    assert code == 0 and "warning: 18446744073709551617M does not fit in 64 bits" in out


def test_what_the_kernel_cannot_reserve_is_not_reported_as_reserved() -> None:
    with pytest.raises(CrashkernelInvalid, match="cannot allocate crashkernel low memory"):
        parse_crashkernel("crashkernel=256M,high crashkernel=9999999999999999999999M,low",
                          16 << 30, X86)
    with pytest.raises(CrashkernelInvalid, match="memory is in use"):
        parse_crashkernel("crashkernel=512M@99999999999999999999G", 16 << 30, X86)
    code, _, err = _cli("parse", "--arch", "x86_64", "--mem", "16G",
                        "crashkernel=256M,high", "crashkernel=9999999999999999999999M,low")
    assert code == 1 and "reserves nothing" in err


# ---- class (a): fuzz of boot configuration and command line parsing -----------------------

_ALPHABET = list("crashkernel=0123456789xKMG@,:- \t\n\"hilowcma\u0661\uff11\u212a\0")
_cmdline_text = st.text(alphabet=st.sampled_from(_ALPHABET), max_size=80)


@settings(max_examples=300, deadline=5_000)
@given(cmdline=_cmdline_text, ram=st.integers(0, 1 << 64))
def test_fuzz_crashkernel_parse(cmdline: str, ram: int) -> None:
    for arch in (X86, load_arch("aarch64"), load_arch("s390x")):
        res = bounded_call(parse_crashkernel, cmdline, ram, arch,
                           allowed=(CrashkernelInvalid,))
        if res is not None:
            assert 0 < res.size < ram


@settings(max_examples=60, deadline=10_000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.one_of(_cmdline_text, st.text(max_size=200)),
       where=st.sampled_from(["/etc/kernel/cmdline", "/etc/default/grub",
                              "/boot/loader/entries/x.conf"]),
       value=st.sampled_from(["192M", "1G-4G:192M,4G-:256M", "512M,high"]))
def test_fuzz_boot_config_files(tmp_path_factory: pytest.TempPathFactory, text: str,
                                where: str, value: str) -> None:
    from mkkdumprd.errors import MkkdumprdError

    root = tmp_path_factory.mktemp("root")
    _write(root, where, text.replace("\0", ""))
    if where.startswith("/boot"):
        _write(root, "/usr/sbin/grubby", "")
    host = Host(root)
    plan = bounded_call(ck.plan_apply, host, value, True,
                        allowed=(MkkdumprdError, FormatError))
    if plan is None or not plan.changes:
        return
    ck.perform(plan, host)  # not the live root: grubby is not run
    again = ck.plan_apply(host, value, False)
    assert not again.changes, again.diff()


_size = st.builds(lambda n, u, hexa: (hex(n) if hexa else str(n)) + u,
                  st.integers(1, 1 << 40), st.sampled_from(["", "K", "M", "G", "m", "g"]),
                  st.booleans())
_range = st.builds(lambda a, b, s: f"{a}-{b}:{s}", _size, st.one_of(st.just(""), _size), _size)
_canonical = st.one_of(
    st.builds(lambda s, o: s + (f"@{o}" if o else ""), _size, st.none() | _size),
    st.builds(lambda rs, o: ",".join(rs) + (f"@{o}" if o else ""),
              st.lists(_range, min_size=1, max_size=3), st.none() | _size),
    st.builds(lambda s, suf: s + suf, _size, st.sampled_from([",high", ",low", ",cma"])),
)


@settings(max_examples=200, deadline=5_000)
@given(_canonical)
def test_grammar_accepts_every_canonical_value(value: str) -> None:
    assert check_value(value) == value


@settings(max_examples=300, deadline=5_000)
@given(st.text(alphabet=st.sampled_from(list("0123456789xKMG@,:-hilowcma $;\n")), max_size=24))
def test_what_the_grammar_accepts_the_kernel_reads_to_its_end(value: str) -> None:
    """A canonical value never hits the kernel's "unrecognized char"/"expected" errors: the
    kernel reads all of it (its other checks, e.g. end <= start, may still refuse it)."""
    try:
        check_value(value)
    except GrammarError:
        return
    assert not any(c in value for c in " $;\n")
    try:
        parse_crashkernel(f"crashkernel={value}", 1 << 62, load_arch("aarch64"))
    except CrashkernelInvalid as exc:
        assert "unrecognized char" not in str(exc) and "expected" not in str(exc), value


# The kernel's number parsing (lib/kstrtox.c _parse_integer_fixup_radix/_parse_integer_limit,
# lib/vsprintf.c simple_strntoull, lib/cmdline.c memparse), transcribed in C so that 64-bit
# unsigned wrap-around is C's own, as an oracle for size.py. One number per input line.
_KERNEL_C = r"""
#include <stdio.h>
#include <string.h>
typedef unsigned long long u64;
static unsigned lc(unsigned c) { return c | 0x20; }
static int isxd(unsigned c) { return (c >= '0' && c <= '9') || (lc(c) >= 'a' && lc(c) <= 'f'); }
static const char *fixup_radix(const char *s, unsigned *base) {
    if (*base == 0) {
        if (s[0] == '0') {
            if (lc((unsigned char)s[1]) == 'x' && isxd((unsigned char)s[2])) *base = 16;
            else *base = 8;
        } else *base = 10;
    }
    if (*base == 16 && s[0] == '0' && lc((unsigned char)s[1]) == 'x') s += 2;
    return s;
}
static unsigned parse_integer(const char *s, unsigned base, u64 *p) {
    u64 res = 0; unsigned rv = 0;
    for (;;) {
        unsigned c = (unsigned char)*s, val;
        if (c >= '0' && c <= '9') val = c - '0';
        else if (lc(c) >= 'a' && lc(c) <= 'f') val = lc(c) - 'a' + 10;
        else break;
        if (val >= base) break;
        res = res * base + val; rv++; s++;
    }
    *p = res; return rv;
}
static u64 memparse(const char *ptr, const char **end) {
    unsigned base = 0; u64 ret; const char *cp = fixup_radix(ptr, &base);
    cp += parse_integer(cp, base, &ret);
    switch (*cp) {
    case 'E': case 'e': ret <<= 10; /* fallthrough */
    case 'P': case 'p': ret <<= 10; /* fallthrough */
    case 'T': case 't': ret <<= 10; /* fallthrough */
    case 'G': case 'g': ret <<= 10; /* fallthrough */
    case 'M': case 'm': ret <<= 10; /* fallthrough */
    case 'K': case 'k': ret <<= 10; cp++; /* fallthrough */
    default: break;
    }
    *end = cp; return ret;
}
int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        const char *end; u64 v = memparse(line, &end);
        printf("%llu %ld\n", v, (long)(end - line));
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def kernel_memparse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("memparse")
    (d / "m.c").write_text(_KERNEL_C)
    subprocess.run(["gcc", "-O1", "-o", str(d / "m"), str(d / "m.c")], check=True)
    return d / "m"


@settings(max_examples=40, deadline=10_000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.sampled_from(list("0123456789abcdefxXkKmMgGtTpPeE@-")),
                        min_size=1, max_size=40), min_size=1, max_size=50))
def test_memparse_matches_the_kernel_in_c(kernel_memparse: Path, inputs: list[str]) -> None:
    out = subprocess.run([str(kernel_memparse)], input="\n".join(inputs) + "\n",
                         capture_output=True, text=True, check=True).stdout.splitlines()
    for text, line in zip(inputs, out, strict=True):
        value, end = (int(x) for x in line.split())
        assert memparse(text) == (value, end), (text, line)
