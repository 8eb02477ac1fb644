"""Every schema change, in order, and the runner that applies them (``connect`` calls it at start-up).

One module per migration (``m001_core_schema`` ...), listed in order in ``registry``; ``runner`` applies each
pending one once, in a transaction. Public API: ``MIGRATIONS``, ``apply_migrations``, ``QUEUE_ORDER`` (the
queue's priority order, defined by ``m004_several_inspectors`` which indexes it) and ``SUBMITTED_EPOCH`` (a
photo's submitted time in epoch seconds, the rank ``m015_queue_rank`` starts each photo at).
"""

from db.migrations.m004_several_inspectors import QUEUE_ORDER
from db.migrations.m015_queue_rank import SUBMITTED_EPOCH
from db.migrations.registry import MIGRATIONS
from db.migrations.runner import apply_migrations

__all__ = ["MIGRATIONS", "QUEUE_ORDER", "SUBMITTED_EPOCH", "apply_migrations"]
