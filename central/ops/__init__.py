"""The operator dashboard at /ops: accounts, sessions, pages, alerts and remote actions."""
