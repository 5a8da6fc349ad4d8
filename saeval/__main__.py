"""`python -m saeval`."""

from saeval.cli.main import main

main()
