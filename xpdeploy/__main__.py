"""``python -m xpdeploy``."""

from xpdeploy.cli import main

main()
