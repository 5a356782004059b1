from mkkdumprd.cli import main

main()
