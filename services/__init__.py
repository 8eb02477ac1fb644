"""Plain Python services behind the console: nothing here imports streamlit."""
