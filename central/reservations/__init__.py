"""Reservations area of central."""
