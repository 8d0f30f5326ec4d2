"""USPS: OAuth2 client credentials and Tracking 3.x."""

from carrier_adapters.usps.client import UspsAdapter

__all__ = ["UspsAdapter"]
