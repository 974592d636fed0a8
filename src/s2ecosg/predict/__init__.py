"""Predict: sliding windows on grid positions over the tiles of a job block, and the mosaic of the tiles."""
