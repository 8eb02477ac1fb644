"""The command line (``python -m services.cli``) over the same services, one module per area.

The top floor: may import every package; nothing under ``services`` imports it.
"""
