"""`python -m soc_agent` runs the CLI."""

from soc_agent.cli import main

main()
