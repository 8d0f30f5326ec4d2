"""Drop-offs: a sender's parcel left at a bank for the carrier's courier to collect."""
