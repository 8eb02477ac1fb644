"""Plain Python services behind the console, one package per domain; nothing here imports streamlit.

The packages form layers; each imports only those below it (checked by ``lint-imports``, see pyproject.toml):
cli > worker > sagemaker | dataset_filter | faces | lines > hitl > reviews > reuse > models > datasets | access > core.
"""
