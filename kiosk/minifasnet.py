"""The two MiniFASNet model files of the liveness texture cue: their names, sha256 and crop scales, where a device
keeps them, and reading them checked. No OpenCV here: the image script checks the files with the same table.

MiniFASNet V2 and V1SE: minivision-ai/Silent-Face-Anti-Spoofing at b6d5f04, Apache-2.0, exported to ONNX (the
shared folder's README; third_party/minifasnet/NOTICE). They are not in this repository: the image script copies
them, with the licence and the NOTICE, into :data:`DEVICE_DIR`, and ``recognizer.liveness.texture_models`` points
there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kiosk.errors import ModelError

# file name -> (sha256, crop scale around the face box)
FILES = {
    "2.7_80x80_MiniFASNetV2.onnx": ("3b014c5d76af5cae93fc89532c37989006dfd33cd86daa4c1dc60eaef8082117", 2.7),
    "4_0_0_80x80_MiniFASNetV1SE.onnx": ("2f4a488f22dfe9115b34412903eb18faa3f1efb9386f548747ccf881ce326a7a", 4.0),
}
DEVICE_DIR = Path("/opt/kiosk/models/minifasnet")


def read_checked(folder: Path, name: str) -> bytes:
    """The bytes of the model ``name`` in ``folder``, refused unless their sha256 is the one this kiosk was measured
    with (a truncated copy or another model would silently change what the texture cue decides)."""
    path = folder / name
    expected = FILES[name][0]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"recognizer.liveness.texture_models: cannot read {path} ({exc.strerror or exc}); copy the MiniFASNet "
            f"models there (make-images --liveness-models DIR) or unset texture_models"
        ) from exc
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise ModelError(
            f"recognizer.liveness.texture_models: {path} has sha256 {found}, expected {expected}: a damaged or "
            f"different file; copy the original model again (docs/liveness.md) or unset texture_models"
        )
    return data
