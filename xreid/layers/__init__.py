"""xreid.layers."""
