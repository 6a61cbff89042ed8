"""triggerstream: an event-stream processor for behavioral offer triggers."""

from importlib.metadata import PackageNotFoundError, version

# Chooses the compiled or the pure core before any module of core/ is imported.
from triggerstream import compiled as compiled

try:
    __version__ = version("triggerstream")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
