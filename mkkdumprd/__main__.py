"""`python3 -m mkkdumprd` and the `mkkdumprd` command: the up-to-date fast path
(uptodate/stamp.py) first, standard library only, then the command line (click)."""

import sys


def main() -> None:
    from mkkdumprd.uptodate import stamp

    argv = sys.argv[1:]
    output = stamp.current_output(argv)
    if output is not None:
        try:
            sys.stdout.write(output)
            sys.stdout.flush()
        except OSError:
            pass  # (a closed pipe) the full path meets it too and says so as it always does
        else:
            sys.exit(0)
    stamp.entry_argv = argv
    from mkkdumprd.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
