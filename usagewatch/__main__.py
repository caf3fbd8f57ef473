"""``python -m usagewatch`` runs the CLI."""

from usagewatch.cli import main

main()
