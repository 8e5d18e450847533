"""xreid.memory."""
