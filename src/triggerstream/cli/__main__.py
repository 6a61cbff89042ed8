"""``python -m triggerstream.cli``: every command, as the ``triggerstream`` command has them."""

from triggerstream.cli import main

main()
