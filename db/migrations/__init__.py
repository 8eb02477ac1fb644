"""Every schema change, in order, and the runner that applies them (``connect`` calls it at start-up).

One module per migration (``m001_core_schema`` ...), listed in order in ``registry``; ``runner`` applies each
pending one once, in a transaction. Public API: ``MIGRATIONS``, ``apply_migrations`` and ``QUEUE_ORDER`` (the
queue's priority order, defined by ``m004_several_inspectors`` which indexes it).
"""

from db.migrations.m004_several_inspectors import QUEUE_ORDER
from db.migrations.registry import MIGRATIONS
from db.migrations.runner import apply_migrations

__all__ = ["MIGRATIONS", "QUEUE_ORDER", "apply_migrations"]
