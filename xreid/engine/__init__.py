"""xreid.engine."""
