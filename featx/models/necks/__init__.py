"""Necks between a backbone and the feature pooling (only those that run at test time)."""
