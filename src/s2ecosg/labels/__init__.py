"""Labels: the reference map (raster or vector) as class ids of the legend on each grid tile."""
