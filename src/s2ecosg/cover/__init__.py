"""Cover: the predicted classes aggregated onto the SURFEX lon/lat grid and written as DIRECT, netCDF and PNG."""
