"""One module per ``medseg`` sub-command. Each defines ``add_parser(subparsers)`` and
``run(args) -> int`` and imports its heavy dependencies inside ``run``."""
