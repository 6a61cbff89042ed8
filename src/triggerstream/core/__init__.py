"""The pure core: one user's event (or clock) in, new state and records out. No I/O.

Where each idea lives:

- ``engine.py``: the orchestrator (``Engine.handle``, ``process``, ``fire_due``) in the
  order of one event; ``step.py``: what a call produced, and ``Step.record``, where every
  decision is recorded (a match's, a timer's, an erasure's).
- ``duplicates.py``: an event id seen again within 24 hours.
- ``facts.py``: how each event type changes the user's facts (``FACTS``).
- ``rule.py``: a rule compiled once; a match waiting for its decision.
- ``triggers.py``: one matcher per trigger kind of an event (event, count, sum, quota,
  nps); a skip is counted in ``on_count``.
- ``timers.py``: deadlines, delays, inactivity and not_followed waits: when they are due
  and what fires; ``not_followed.py``: a ``first`` event starts a wait, a ``then`` ends it.
- ``decide.py``: the matches of one moment in priority order, the policy's verdict, what
  it leaves behind (cooldown, caps, touch) and the trigger sent.
- ``policy.py``: the suppression checks in order, and when a block ends by itself
  (``SuppressionPolicy.ends``); ``caps.py``: every frequency cap, enforced;
  ``channels.py``: a channel is chosen (``ChannelRouter.choose``).
- ``deferral.py``: a match held back by a block that ends by itself waits in the state,
  is decided again at the user's later moments, and is released or expires.
- ``attribution.py``: touches and last-touch credit for purchases.
- ``recommend.py``: co-purchase counts and complements for cross-sell.
- ``state.py``, ``windows.py``, ``conditions.py``, ``summaries.py``, ``ids.py``,
  ``records.py``: the user's state, sliding windows, compiled conditions, the sentences
  in decisions, deterministic ids, the records' classes.
"""
