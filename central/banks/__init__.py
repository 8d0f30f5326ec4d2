"""Banks area of central."""
