"""The safety hub."""
