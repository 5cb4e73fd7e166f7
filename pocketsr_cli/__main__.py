"""Allow ``python -m pocketsr_cli``."""

from pocketsr_cli._entry import main

if __name__ == "__main__":
    main()
