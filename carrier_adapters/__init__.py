"""Carrier integrations behind one `CarrierAdapter` protocol."""
