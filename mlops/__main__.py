"""`python -m mlops` runs the command line."""

from mlops.cli import main

main()
