"""Shards: training and validation patches per tile (cut), their index and statistics, and reading them back."""
