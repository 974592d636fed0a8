"""s2ecosg: Sentinel-2 land cover for the SURFEX ECOCLIMAP-SG cover file.

Importing the package must stay cheap: no torch, rasterio or geopandas here.
"""

__version__ = "0.1.0"
