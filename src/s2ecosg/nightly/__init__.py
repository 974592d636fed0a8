"""The nightly service: rerun the workflow, review what changed, publish or hold the product (``s2ecosg nightly``)."""
