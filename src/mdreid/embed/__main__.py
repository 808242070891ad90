from mdreid.embed.cli import main

main()
