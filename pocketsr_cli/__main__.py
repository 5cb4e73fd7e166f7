"""Allow ``python -m pocketsr_cli``."""

from pocketsr_cli.cli import main

if __name__ == "__main__":
    main()
