"""``python -m triggerstream``: the same as the ``triggerstream`` command."""

from triggerstream.cli import main

main()
