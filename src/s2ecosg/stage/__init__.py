"""Stage: find the scenes (inventory), warp, mask and composite them onto the grid tiles of each job block."""
