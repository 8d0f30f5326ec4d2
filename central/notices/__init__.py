"""Notices to recipients: the network's own email and SMS at each step of a parcel's life."""
