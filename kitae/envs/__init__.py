"""Environment construction."""
