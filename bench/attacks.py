"""Simulated presentation attacks at the kiosk's distances, built from still-camera clips and photos.

A presentation attack instrument (a phone, a tablet, a printed photo) is a flat or bent sheet placed in front of the
kiosk's camera. It is drawn in metres, turned and moved in 3-D, and projected by the kiosk's own camera model (the
horizontal field of view of :class:`kiosk.config.GeometryConfig`, 640x360 px) over a still, textured room. What it
shows is rendered the way such an instrument shows pictures; every parameter is drawn per presentation from the
ranges below, chosen from what a camera sees of such instruments, not tuned on the results:

* **screen** (phone or tablet, a replayed clip or a photo): gamma 0.75-1.35 and a lifted black level (8-24 grey
  levels: an LCD's backlight leaks), a cold or warm tint (+-6 %), a black bezel (4-9 mm), a reflection of a window
  (a soft bright patch of 10-35 grey levels that drifts across the glass), moire (the beat of the screen's pixel grid
  with the sensor's: a sinusoid of 3-9 % contrast, period 5-14 camera px, random angle, shifting with the pose) and
  refresh banding (rolling horizontal bands of 2-5 %, period 25-70 px, from the backlight's PWM against the rolling
  shutter);
* **print** (a photo printed on paper): the ink's range (black 22-40, white 212-240) and 75-90 % saturation, an
  amplitude halftone screen at 45 degrees (period 3-4 px of the printed image, 5-9 % contrast), paper texture
  (fibres: smoothed noise of 2-4 %), a white margin (6-12 mm), and a bend: the sheet curls around a vertical axis
  (radius 0.15-0.5 m, or flat one time in four), drawn as 12 planar strips;
* **hand or stand**: in a hand the sheet turns (about 20 degrees) and shifts (a few cm) along smooth random paths
  with tremor; on a stand it keeps one pose;
* **distance**: the instrument is placed so that the face it shows is 70-140 px wide in the 640 px frame, as a
  person's face at 0.55-1.1 m is (the middle of the kiosk's 0.3-1.5 m): a phone then sits 0.1-0.25 m from the
  camera, a tablet or a print 0.25-0.5 m;
* **camera**: defocus blur (sigma 0.5-1.0 px) and sensor noise (sd 2 grey levels).

The content is cropped around its face before it is shown (as an attacker zooms in): the face fills about 45 % of a
phone's width and a third of a tablet's or a print's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.config import GeometryConfig
from kiosk.recognizer import faces

FPS = 30.0
FRAME_W, FRAME_H = 640, 360
FOCAL_PX = FRAME_W / 2 / math.tan(math.radians(GeometryConfig().hfov_deg) / 2)
FACE_PX = (70.0, 140.0)  # face width in the camera frame: a person's face at 0.55-1.1 m


@dataclass(frozen=True)
class Instrument:
    """What is held up: its shown area's width in metres and how much of that width the face fills."""

    name: str
    width_m: float
    face_share: float
    screen: bool


PHONE = Instrument("phone", 0.068, 0.45, True)
TABLET = Instrument("tablet", 0.20, 0.33, True)
PRINT = Instrument("print", 0.15, 0.33, False)


def room(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """The still room behind the instrument: a textured scene at the camera's size, darkened or lightened."""
    scene = cv2.resize(background, (FRAME_W, FRAME_H), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.clip(scene * rng.uniform(0.6, 1.0), 0, 255).astype(np.uint8)


def crop_to_face(picture: np.ndarray, box: faces.Box, share: float, aspect: float) -> np.ndarray:
    """``picture`` cropped around ``box`` so that the face is ``share`` of the crop's width, ``aspect`` = h/w (the
    crop is padded with black where it leaves the picture)."""
    cw = box.width / share
    ch = cw * aspect
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2 + 0.15 * box.height
    x0, y0 = round(cx - cw / 2), round(cy - ch / 2)
    pad = max(0, -x0, -y0, x0 + round(cw) - picture.shape[1], y0 + round(ch) - picture.shape[0])
    padded = cv2.copyMakeBorder(picture, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return padded[y0 + pad : y0 + pad + round(ch), x0 + pad : x0 + pad + round(cw)]


def poses(n: int, rng: np.random.Generator, hand: bool) -> list[dict[str, float]]:
    """``n`` poses of the instrument (radians and metres): slow sums of sines plus tremor in a hand, one pose on a
    stand (a small tilt, as a stand leaves it)."""
    if not hand:
        pose = {"rx": rng.uniform(-0.12, 0.12), "ry": rng.uniform(-0.15, 0.15), "rz": rng.uniform(-0.05, 0.05),
                "tx": rng.uniform(-0.02, 0.02), "ty": rng.uniform(-0.01, 0.01), "dz": 0.0}
        return [pose] * n
    t = np.arange(n) / FPS

    def slow(amplitude: float) -> np.ndarray:
        phase, freq = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.2, 1.0, 3)
        return amplitude * sum(np.sin(2 * np.pi * freq[k] * t + phase[k]) for k in range(3)) / 3

    def tremor(sd: float) -> np.ndarray:
        return rng.normal(0, sd, n)

    path = {"rx": slow(0.35) + tremor(0.01), "ry": slow(0.35) + tremor(0.01), "rz": slow(0.15) + tremor(0.005),
            "tx": slow(0.03) + tremor(0.0008), "ty": slow(0.02) + tremor(0.0008), "dz": slow(0.04)}
    return [{k: float(v[i]) for k, v in path.items()} for i in range(n)]


def project(points_m: np.ndarray, pose: dict[str, float], distance_m: float) -> np.ndarray:
    """Camera pixels of (N, 3) points of the instrument (its centre at the origin) in ``pose``."""
    rot = cv2.Rodrigues(np.array([pose["rx"], pose["ry"], pose["rz"]]))[0]
    placed = points_m @ rot.T + np.array([pose["tx"], pose["ty"], distance_m + pose["dz"]])
    return placed[:, :2] / placed[:, 2:] * FOCAL_PX + np.array([FRAME_W / 2, FRAME_H / 2])


def place(frame: np.ndarray, sheet: np.ndarray, width_m: float, pose: dict[str, float], distance_m: float,
          bend_radius_m: float | None) -> np.ndarray:
    """Draw ``sheet`` (an image ``width_m`` wide) into ``frame``: one plane, or 12 strips curled around a vertical axis
    of radius ``bend_radius_m`` (the edges bend away from the camera)."""
    h, w = sheet.shape[:2]
    metres = width_m / w
    strips = 1 if bend_radius_m is None else 12
    edges = np.linspace(0, w, strips + 1)
    for a, b in itertools.pairwise(edges):
        corners = []
        for x, y in ((a, 0), (b, 0), (b, h), (a, h)):
            u, v = (x - w / 2) * metres, (y - h / 2) * metres
            if bend_radius_m is None:
                corners.append((u, v, 0.0))
            else:
                angle = u / bend_radius_m
                corners.append((bend_radius_m * math.sin(angle), v, bend_radius_m * (1 - math.cos(angle))))
        quad = project(np.array(corners), pose, distance_m).astype(np.float32)
        src = np.array([[a, 0], [b, 0], [b, h], [a, h]], np.float32)
        homography = cv2.getPerspectiveTransform(src, quad)
        x0, x1 = int(a), min(w, math.ceil(b) + 1)
        strip = np.zeros_like(sheet)
        strip[:, x0:x1] = sheet[:, x0:x1]
        mask = np.zeros((h, w), np.uint8)
        mask[:, x0:x1] = 255
        warped = cv2.warpPerspective(strip, homography, (FRAME_W, FRAME_H))
        covered = cv2.warpPerspective(mask, homography, (FRAME_W, FRAME_H)) > 127
        frame[covered] = warped[covered]
    return frame


def screen_surface(picture: np.ndarray, rng: np.random.Generator) -> Callable[[np.ndarray, int], np.ndarray]:
    """How one phone or tablet shows a picture: gamma, black level, tint, a drifting reflection; the bezel is drawn
    around it. Returns ``show(picture, i)`` for frame ``i``."""
    gamma, black = rng.uniform(0.75, 1.35), rng.uniform(8, 24)
    tint = 1 + rng.uniform(-0.06, 0.06) * np.array([1.0, 0.0, -1.0])
    glare, glare_px = rng.uniform(10, 35), rng.uniform(0.25, 0.5)
    start, drift = rng.uniform(0, 1, 2), rng.uniform(-0.02, 0.02, 2)

    def show(shown: np.ndarray, i: int) -> np.ndarray:
        h, w = shown.shape[:2]
        level = black + (255 - black) * (shown.astype(np.float32) / 255) ** gamma * tint
        cx, cy = (start + drift * i / FPS) % 1.0 * (w, h)
        yy, xx = np.mgrid[:h, :w]
        spot = glare * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (glare_px * w) ** 2)))
        return np.clip(level + spot[..., None], 0, 255).astype(np.uint8)

    del picture
    return show


def camera_artefacts(rng: np.random.Generator, screen: bool) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """What the camera adds where it sees a screen (``mask``): moire and rolling refresh bands. Returns
    ``apply(frame, mask, i)``."""
    period, angle, moire = rng.uniform(5, 14), rng.uniform(0, np.pi), rng.uniform(0.03, 0.09)
    band_period, band, roll = rng.uniform(25, 70), rng.uniform(0.02, 0.05), rng.uniform(20, 120)
    yy, xx = np.mgrid[:FRAME_H, :FRAME_W].astype(np.float32)

    def apply(frame: np.ndarray, mask: np.ndarray, i: int) -> np.ndarray:
        if not screen:
            return frame
        phase = 0.7 * i
        gain = 1 + moire * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
        gain *= 1 + band * np.sin(2 * np.pi * (yy + roll * i / FPS) / band_period)
        out = frame.astype(np.float32)
        out[mask] *= gain[mask][:, None]
        return np.clip(out, 0, 255).astype(np.uint8)

    return apply


def printed(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``photo`` as a print: the ink's range and saturation, a halftone screen, paper texture and a white margin."""
    black, white, saturation = rng.uniform(22, 40), rng.uniform(212, 240), rng.uniform(0.75, 0.9)
    img = photo.astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + saturation * (img - grey)
    img = black + (white - black) * img / 255
    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    period = rng.uniform(3, 4)
    u, v = (xx + yy) / math.sqrt(2), (xx - yy) / math.sqrt(2)
    img *= (1 + rng.uniform(0.05, 0.09) * np.cos(2 * np.pi * u / period) * np.cos(2 * np.pi * v / period))[..., None]
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
    img *= (1 + rng.uniform(0.02, 0.04) * fibres / max(1e-6, float(fibres.std())))[..., None]
    margin = max(2, round(w * rng.uniform(0.04, 0.08)))
    paper = (white, white, white * 0.97)
    return cv2.copyMakeBorder(np.clip(img, 0, 255).astype(np.uint8), margin, margin, margin, margin,
                              cv2.BORDER_CONSTANT, value=paper)


@dataclass(frozen=True)
class Attack:
    """One simulated attack: the instrument, held in a hand or on a stand, showing a clip or a photo."""

    instrument: Instrument
    hand: bool
    photo: bool = False  # a screen showing one photo instead of a clip

    @property
    def kind(self) -> str:
        where = "in a hand" if self.hand else "on a stand"
        if not self.instrument.screen:
            return f"print {where}"
        return f"photo on a phone {where}" if self.photo else f"replay {where}"


def present(attack: Attack, pictures: list[np.ndarray], box: faces.Box, n: int, rng: np.random.Generator,
            background: np.ndarray, fps: float) -> list[np.ndarray]:
    """``n`` camera frames (RGB, 640x360 at 30 fps) of the attack showing ``pictures`` (a clip at ``fps``, looped, or
    one photo) whose face is at ``box``."""
    inst = attack.instrument
    aspect = 1.6 if inst is PHONE else 0.75 if inst is TABLET else 1.3
    content = [crop_to_face(p, box, inst.face_share, aspect) for p in pictures]
    face_m = inst.width_m * inst.face_share
    distance = FOCAL_PX * face_m / rng.uniform(*FACE_PX)
    scene = room(rng, background)
    path = poses(n, rng, attack.hand)
    artefacts = camera_artefacts(rng, inst.screen)
    blur = rng.uniform(0.5, 1.0)
    if inst.screen:
        show = screen_surface(content[0], rng)
        bezel_share = rng.uniform(0.004, 0.009) / inst.width_m
        bend = None
    else:
        sheet = printed(content[0], rng)  # a print shows one picture
        bend = None if rng.uniform() < 0.25 else rng.uniform(0.15, 0.5)
    frames = []
    for i, pose in enumerate(path):
        k = int(i / FPS * fps) % len(content)
        if inst.screen:
            shown = show(content[k], i)
            edge = max(2, round(shown.shape[1] * bezel_share))
            sheet = cv2.copyMakeBorder(shown, edge, edge, edge, edge, cv2.BORDER_CONSTANT, value=(8, 8, 10))
            width_m = inst.width_m * sheet.shape[1] / shown.shape[1]
        else:
            width_m = inst.width_m * sheet.shape[1] / content[0].shape[1]
        frame = place(scene.copy(), sheet, width_m, pose, distance, bend)
        if inst.screen:
            covered = place(np.zeros((FRAME_H, FRAME_W, 3), np.uint8), np.full_like(sheet, 255), width_m, pose,
                            distance, None)[..., 0] > 127
            frame = artefacts(frame, covered, i)
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    return frames
