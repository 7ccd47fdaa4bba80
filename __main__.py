"""``python -m taskmill`` runs the command line."""

from taskmill.cli import main

main()
