"""Who may sign in: local accounts (passwords, lockout, roles) and single sign-on mappings.

May import: ``core``.
"""
