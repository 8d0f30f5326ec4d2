"""FedEx: OAuth2 and the Track API (batches of 30), signed webhook pushes."""

from carrier_adapters.fedex.client import FedexAdapter

__all__ = ["FedexAdapter"]
