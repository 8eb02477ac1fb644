"""The background worker: the job-runner thread, its periodic chores, and the list of every job kind.

Owns wiring, not logic. May import every package but ``cli``; only ``cli`` (and the app) import it.
"""
