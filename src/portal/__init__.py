"""Customer self-service portal for a municipal water utility."""
