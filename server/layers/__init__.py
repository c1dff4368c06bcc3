"""Layered mode: split an image into RGBA layers, restore locked layers after an edit, export.

Pure, synchronous functions over bytes and NumPy arrays (CPU-bound: run them off the event
loop).
"""

from aigen.server.layers.export import export_zip, layer_file_name
from aigen.server.layers.images import LayerImage, composite, decode_rgba, encode_png
from aigen.server.layers.restore import DRIFT_TOLERANCE, RestoreResult, fit_to_size, restore_locked, unlocked_mask
from aigen.server.layers.separate import MAX_LAYERS, MIN_LAYERS, reseparate_unlocked, separate, separate_rgba

__all__ = [
    "DRIFT_TOLERANCE",
    "MAX_LAYERS",
    "MIN_LAYERS",
    "LayerImage",
    "RestoreResult",
    "composite",
    "decode_rgba",
    "encode_png",
    "export_zip",
    "fit_to_size",
    "layer_file_name",
    "reseparate_unlocked",
    "restore_locked",
    "separate",
    "separate_rgba",
    "unlocked_mask",
]
