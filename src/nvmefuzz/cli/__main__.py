"""``python -m nvmefuzz.cli``."""

from nvmefuzz.cli import main

main()
