"""DHL: Shipment Tracking - Unified with the DHL-API-Key header."""

from carrier_adapters.dhl.client import DhlAdapter

__all__ = ["DhlAdapter"]
