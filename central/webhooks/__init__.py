"""Webhooks area of central."""
