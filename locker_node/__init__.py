"""Locker bank node: drives the lock boards, serves the kiosk and syncs with central."""
