"""Parcel tracking from the carriers: polling, inbound pushes, and what they do to reservations."""
