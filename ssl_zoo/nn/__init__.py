"""Building blocks with no Lightning in them."""
