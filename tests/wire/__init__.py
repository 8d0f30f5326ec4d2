"""Tests of the node <-> central wire module."""
