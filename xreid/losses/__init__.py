"""xreid.losses."""
