from mdreid.pretrain.cli import main

main()
