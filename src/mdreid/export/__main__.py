from mdreid.export.cli import main

main()
