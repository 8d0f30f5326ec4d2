"""Usage analytics: a durable outbox filled from central's history and flushed to Mixpanel."""
