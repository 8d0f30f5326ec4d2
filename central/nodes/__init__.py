"""Locker nodes as central sees them: enrollment, signed requests, events, feed, commands."""
