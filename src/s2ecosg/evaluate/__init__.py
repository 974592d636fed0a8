"""Evaluate: agreement with the reference at CLC levels, ECOSG and a per-pixel baseline side by side."""
