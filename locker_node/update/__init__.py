"""Node updates: install the wanted version into a fresh venv, switch, and roll back by itself."""
