"""Dashboard insight: network overview, bank detail, parcel search, charts, daily reports."""
