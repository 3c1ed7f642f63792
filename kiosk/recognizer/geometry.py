"""From the kiosk's geometry (field of view, serving distances) to pixel sizes.

dlib's HOG detector finds faces of about 80 px and wider. A face at the farthest serving distance must reach
that size in the detection image, and nothing more is needed: so the detection resolution follows from
the geometry, not from habit. Faces smaller than a face at the farthest distance belong to people who are
not at the terminal and are not served.
"""

from __future__ import annotations

import math

from kiosk.config import GeometryConfig, QualityConfig


def face_px(geo: GeometryConfig, image_width: int, distance_m: float) -> float:
    """Expected width in pixels of a face at ``distance_m`` in an image ``image_width`` pixels wide."""
    view_width_m = 2.0 * distance_m * math.tan(math.radians(geo.hfov_deg) / 2.0)
    return image_width * geo.face_width_m / view_width_m


def detection_width(geo: GeometryConfig, image_width: int) -> int:
    """Width of the detection image: a face at the farthest distance is ``detector_face_px`` wide there.

    Never wider than the camera image (upsampling only adds cost), and ``detect_width`` overrides it.
    """
    if geo.detect_width:
        return min(geo.detect_width, image_width)
    scale = geo.detector_face_px / face_px(geo, image_width, geo.max_distance_m)
    return min(image_width, math.ceil(image_width * scale / 2) * 2)


def min_face_px(geo: GeometryConfig, quality: QualityConfig, image_width: int) -> int:
    """Smallest face (main-stream pixels) that is served: the farthest distance, with 10 % tolerance."""
    if quality.min_face_px:
        return quality.min_face_px
    return math.floor(0.9 * face_px(geo, image_width, geo.max_distance_m))
