"""Central on several hosts behind a real HAProxy, on one PostgreSQL database."""
