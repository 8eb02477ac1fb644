"""The ground floor every capability stands on: errors, clock, workspace and settings, object storage,
images, audit log, roles, network allowlist, shifts and the job runner (which knows no job kind).

May import: ``db`` only. Every other package may import it.
"""
