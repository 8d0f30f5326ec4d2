"""The recipient's page for a parcel, `/p/<token>`: its state, the pickup code and a few actions."""
