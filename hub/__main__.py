"""`python -m hub` is `mcphub`."""

from hub.cli import main

main()
