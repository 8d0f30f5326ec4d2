"""UPS: OAuth2 client credentials, Track API v1 and Track Alert."""

from carrier_adapters.ups.client import UpsAdapter

__all__ = ["UpsAdapter"]
