"""Central service: carrier API, allocation, parcel lifecycle, webhooks and operator tools."""
