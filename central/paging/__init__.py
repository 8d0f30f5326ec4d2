"""Paging: raised and resolved alerts go to the operators subscribed to them."""
