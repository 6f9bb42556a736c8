"""python -m vidgate → the CLI."""

from vidgate.cli import main

main()
