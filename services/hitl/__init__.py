"""People in the loop: the review queue and its leases, answers and history, consensus (Dawid-Skene), gold
items, likely mistakes, inspector statistics, similar past cases, and the export of consolidated labels.

May import: ``reviews``, ``reuse``, ``models``, ``datasets``, ``core``.
"""
