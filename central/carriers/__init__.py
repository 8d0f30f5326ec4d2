"""Carriers area of central."""
