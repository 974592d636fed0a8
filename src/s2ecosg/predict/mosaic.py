"""The mosaic rule: one GDAL VRT over the predicted class tiles (``predict/mosaic.vrt``), for viewing."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from s2ecosg.io import atomic_path, open_raster


def write_mosaic(tiles: list[str], output: str) -> None:
    """A GDAL VRT mosaic of single-band tiles sharing CRS and resolution (paths relative to the VRT)."""
    infos = []
    for path in tiles:
        with open_raster(path) as source:
            infos.append((path, source.bounds, source.res, source.crs, source.shape))
    left, top = min(info[1].left for info in infos), max(info[1].top for info in infos)
    right, bottom = max(info[1].right for info in infos), min(info[1].bottom for info in infos)
    resolution = infos[0][2][0]
    width, height = round((right - left) / resolution), round((top - bottom) / resolution)
    sources = []
    for path, bounds, _, _, (rows, columns) in infos:
        relative = escape(str(Path(path).resolve().relative_to(Path(output).resolve().parent)))
        x_offset, y_offset = round((bounds.left - left) / resolution), round((top - bounds.top) / resolution)
        sources.append(
            f'    <SimpleSource><SourceFilename relativeToVRT="1">{relative}</SourceFilename><SourceBand>1</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{columns}" ySize="{rows}"/>'
            f'<DstRect xOff="{x_offset}" yOff="{y_offset}" xSize="{columns}" ySize="{rows}"/></SimpleSource>'
        )
    text = "\n".join(
        [
            f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
            f"  <SRS>{escape(infos[0][3].to_wkt())}</SRS>",
            f"  <GeoTransform>{left}, {resolution}, 0, {top}, 0, {-resolution}</GeoTransform>",
            '  <VRTRasterBand dataType="Byte" band="1"><NoDataValue>0</NoDataValue>',
            *sources,
            "  </VRTRasterBand>",
            "</VRTDataset>",
            "",
        ]
    )
    with atomic_path(output) as temporary:
        temporary.write_text(text)
