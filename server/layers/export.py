"""Layer stack export: a zip of one PNG per layer plus a JSON manifest."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from io import BytesIO

from aigen.server.layers.images import LayerImage, encode_png

MANIFEST = "manifest.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same stack always gives the same bytes


def layer_file_name(index: int, name: str) -> str:
    """`NN_name.png`, the name reduced to lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "layer"
    return f"{index:02d}_{slug}.png"


def export_zip(layers: Sequence[LayerImage], session_id: str) -> bytes:
    """Zip the stack (bottom first, by z_order) as PNGs with a manifest describing each layer."""
    if not layers:
        raise ValueError("there are no layers to export")
    ordered = sorted(layers, key=lambda layer: layer.z_order)
    height, width = ordered[0].pixels.shape[:2]
    if any(layer.pixels.shape[:2] != (height, width) for layer in ordered):
        raise ValueError("all layers must have the same size")
    entries = []
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, layer in enumerate(ordered):
            file_name = layer_file_name(index, layer.name)
            _write(archive, file_name, encode_png(layer.pixels), zipfile.ZIP_STORED)
            entries.append(_entry(index, file_name, layer))
        manifest = {"session_id": session_id, "image_size": {"width": width, "height": height}, "layers": entries}
        _write(archive, MANIFEST, json.dumps(manifest, indent=2).encode(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _write(archive: zipfile.ZipFile, name: str, data: bytes, compression: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _entry(index: int, file_name: str, layer: LayerImage) -> dict[str, object]:
    x, y, width, height = layer.bbox
    return {
        "order": index,
        "file": file_name,
        "name": layer.name,
        "layer_id": layer.layer_id,
        "z_order": layer.z_order,
        "bbox": {"x": x, "y": y, "width": width, "height": height},
        "coverage": round(layer.coverage, 6),
        "locked": layer.locked,
    }
