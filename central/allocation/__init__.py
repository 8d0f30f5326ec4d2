"""Allocation area of central."""
