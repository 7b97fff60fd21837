"""``python -m pfsim`` runs the command line."""

from pfsim.cli import main

if __name__ == "__main__":
    main()
