"""Seeing why (docs/contract.md section 16): one user's state, what each rule needs to
fire now, what is pending, and their decisions.

``view.py`` builds the view, a pure function of the rules, a state, the time and the
decisions (the worker's inspector calls it too); ``why.py`` words each rule;
``history.py`` reads replay files once for one user; ``text.py`` shows the view to
people; ``kept.py`` gives the decisions a state keeps, for the worker's inspector,
which has no decision log.
"""

from triggerstream.explain.history import UserHistory, read_user
from triggerstream.explain.view import explain_user

__all__ = ["UserHistory", "explain_user", "read_user"]
