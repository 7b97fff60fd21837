"""``python -m pfsim`` runs the command line."""

from pfsim.cli import console_main

if __name__ == "__main__":
    console_main()
