"""xreid.models."""
