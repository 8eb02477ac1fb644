"""Database layer: connections and schema migrations (imports nothing of ours)."""
