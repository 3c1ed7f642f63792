"""The terminal's own screen, drawn with pygame: idle clock, live camera view, and result panels.

Recognition never waits for drawing: :meth:`PygameScreen.show` only stores the newest frame, tracks and outcome
(older ones are dropped) and a dedicated ``screen`` thread renders at its own pace and pumps pygame's events.
:func:`render` is the drawing itself, a function of a surface and a :class:`ScreenState`, so tests and
:func:`screenshots` draw deterministically without the thread. Every size and font is computed from the surface
size, and pygame's default font is used, so no font files are needed (see docs/screen.md).

pygame is imported lazily so that the rest of :mod:`kiosk.display` works without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from kiosk.display import texts
from kiosk.errors import KioskError
from kiosk.terminal import EntryView, TerminalView

if TYPE_CHECKING:
    import pygame

    from kiosk.camera import Frame
    from kiosk.events.recorder import Outcome
    from kiosk.recognizer.pipeline import FrameResult, TrackView
    from kiosk_contract.gallery import Person

log = logging.getLogger("kiosk.display")

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
IDLE_BG: Color = (10, 22, 44)
IDLE_DATE: Color = (200, 212, 232)
BAR_BG: Color = (0, 84, 150)
LIVE_BG: Color = (0, 0, 0)
HIGHLIGHT: Color = (255, 200, 0)
"""The served face's box (the face the terminal is working on)."""
OTHER_BOX: Color = (170, 170, 170)
GREEN: Color = (0, 118, 52)
AMBER: Color = (240, 168, 0)
RED: Color = (168, 18, 24)
BLUE: Color = (18, 70, 140)
KEY_BG: Color = (40, 58, 92)
KEY_OK: Color = (0, 118, 52)
KEY_CANCEL: Color = (140, 30, 36)
DIM = (48, 48, 48)  # multiplied into the picture while nobody is there (about a fifth of the brightness)

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((800, 480), (1024, 600), (1920, 1080), (480, 800))
SCREENS: tuple[str, ...] = (
    "idle",
    "idle_offline",
    "live",
    "live_challenge",
    "recorded",
    "already",
    "not_recognised",
    "not_live",
    "outside_hours",
    "cannot_record",
    "cannot_record_storage_failed",
    "entry",
    "entry_error",
    "pending_review",
    "limited",
    "problem_camera",
    "problem_gallery",
    "problem_storage",
    "problem_storage_failed",
    "asleep",
)
"""Every screen :func:`screenshots` renders (see :func:`sample_states`)."""
MAX_SNAPSHOTS = 500  # display.snapshot_dir is for demos: a day's run must not fill the disk
KEYPAD: tuple[tuple[str, ...], ...] = (("1", "2", "3"), ("4", "5", "6"), ("7", "8", "9"), ("back", "0", "ok"))


@dataclass(frozen=True)
class ScreenState:
    """Everything one drawing needs. ``now`` is aware and site-local; ``outcome`` is the result being held."""

    now: datetime
    office: str = ""
    tz: str = "Asia/Makassar"
    language: str = "id"
    frame: np.ndarray | None = None  # H x W x 3 RGB
    tracks: tuple[TrackView, ...] = ()
    outcome: Outcome | None = None
    person: Person | None = None  # the outcome's person, looked up by NIP
    view: TerminalView = field(default_factory=TerminalView)

    @property
    def screen(self) -> str:
        """Which screen this state shows: the NIP entry, an outcome's status, a problem, asleep, ``live`` with faces
        in view, else ``idle``."""
        if self.view.entry is not None:
            return "entry"
        if self.outcome is not None:
            return self.outcome.status
        if self.view.blocking:
            return "problem"
        if self.view.asleep:
            return "asleep"
        if self.frame is not None and self.tracks:
            return "live"
        return "idle"


@dataclass(frozen=True)
class TextBlock:
    """One drawn text: its role, the text, and where it landed (x, y, w, h)."""

    name: str
    text: str
    rect: tuple[int, int, int, int]


_local = threading.local()  # fonts per thread: SDL_ttf objects are never shared between threads


def _font(px: int) -> pygame.font.Font:
    import pygame

    if not pygame.font.get_init():
        pygame.font.init()
    fonts: dict[int, Any] | None = getattr(_local, "fonts", None)
    if fonts is None:
        fonts = _local.fonts = {}
    font = fonts.get(px)
    if font is None:
        font = fonts[px] = pygame.font.Font(None, px)
    return font


@dataclass
class _Item:
    name: str
    text: str
    px: int
    color: Color
    sizes: list[int] = field(default_factory=list)


def _fit_px(text: str, px: int, max_w: int) -> int:
    """The largest size <= px at which ``text`` is at most ``max_w`` wide."""
    px = max(8, px)
    w = _font(px).size(text)[0]
    if w > max_w:
        px = max(8, int(px * max_w / w))
        while px > 8 and _font(px).size(text)[0] > max_w:
            px -= 1
    return px


def _stack(surface: pygame.Surface, region: pygame.Rect, items: Sequence[_Item], out: list[TextBlock]) -> None:
    """Draw ``items`` centred in a vertical stack inside ``region``, shrinking them all until they fit."""
    items = [i for i in items if i.text]
    if not items:
        return
    gap = max(2, region.height // 40)
    scale = 1.0
    for _ in range(12):
        sizes = [_fit_px(i.text, int(i.px * scale), region.width) for i in items]
        heights = [_font(s).size(i.text)[1] for s, i in zip(sizes, items, strict=True)]
        total = sum(heights) + gap * (len(items) - 1)
        if total <= region.height:
            break
        scale *= 0.97 * region.height / total
    y = region.top + (region.height - total) // 2
    for item, px, h in zip(items, sizes, heights, strict=True):
        img = _font(px).render(item.text, True, item.color)
        rect = img.get_rect(midtop=(region.centerx, y))
        surface.blit(img, rect)
        out.append(TextBlock(item.name, item.text, (rect.x, rect.y, rect.width, rect.height)))
        y += h + gap


def render(surface: pygame.Surface, state: ScreenState) -> list[TextBlock]:
    """Draw ``state`` on ``surface``; returns the text blocks drawn (for :func:`text_fits`)."""
    import pygame

    w, h = surface.get_size()
    unit = min(w, h)
    margin = max(4, unit // 25)
    inner_w = w - 2 * margin
    lang = state.language
    view = state.view
    blocks: list[TextBlock] = []
    screen = state.screen
    if screen == "entry":
        assert view.entry is not None
        _draw_entry(surface, view.entry, lang, blocks)
        return blocks
    if screen in ("idle", "asleep"):
        surface.fill(IDLE_BG)
        bar_h = max(24, h // 6)
        status = texts.status_lines(lang, view.network, view.pending, "clock" in view.problems)
        strip_h = len(status) * max(20, h // 16) if screen == "idle" else 0
        if strip_h:
            items = [_Item(f"status{i}", line, int(unit * 0.05), IDLE_DATE) for i, line in enumerate(status)]
            _stack(surface, pygame.Rect(margin, margin // 2, inner_w, strip_h), items, blocks)
        bar = pygame.Rect(0, h - bar_h, w, bar_h)
        surface.fill(BAR_BG, bar)
        top = pygame.Rect(margin, strip_h + margin, inner_w, h - bar_h - strip_h - 2 * margin)
        _stack(
            surface,
            top,
            [
                _Item("office", state.office, int(unit * 0.08), WHITE),
                _Item("clock", texts.clock_text(state.now, state.tz), int(unit * 0.30), WHITE),
                _Item("date", texts.date_text(state.now, lang), int(unit * 0.095), IDLE_DATE),
            ],
            blocks,
        )
        line = texts.text(lang, "asleep") if screen == "asleep" else _bar_line(view, lang, texts.text(lang, "look"))
        instruction = _Item("instruction", line, int(unit * 0.09), WHITE)
        _stack(surface, bar.inflate(-2 * margin, -bar_h // 8), [instruction], blocks)
        if screen == "asleep":
            surface.fill(DIM, special_flags=pygame.BLEND_MULT)
        return blocks
    if screen == "live":
        surface.fill(LIVE_BG)
        bar_h = max(24, h // 7)
        view_rect = pygame.Rect(0, 0, w, h - bar_h)
        _draw_frame(surface, view_rect, state.frame, state.tracks)
        bar = pygame.Rect(0, h - bar_h, w, bar_h)
        surface.fill(BAR_BG, bar)
        served = next((t for t in state.tracks if t.served), None)
        advice = texts.guidance(lang, served.problems) if served else None
        if advice is None:
            advice = _bar_line(view, lang, texts.text(lang, "searching" if served else "look"))
        _stack(
            surface, bar.inflate(-2 * margin, -bar_h // 8), [_Item("guidance", advice, int(unit * 0.09), WHITE)], blocks
        )
        return blocks
    region = pygame.Rect(margin, margin, inner_w, h - 2 * margin)
    if screen == "problem":
        _draw_problem(surface, state, region, unit, blocks)
    else:
        _draw_result(surface, state, region, unit, blocks)
    return blocks


def _bar_line(view: TerminalView, lang: str, default: str) -> str:
    """The bottom bar's text: the kind chosen with a key when there is one, else ``default``."""
    if view.chosen_kind:
        return texts.text(lang, "chosen", kind=texts.kind_label(lang, view.chosen_kind))
    return default


def _draw_frame(
    surface: pygame.Surface, view: pygame.Rect, rgb: np.ndarray | None, tracks: Iterable[TrackView]
) -> None:
    """The camera picture scaled to fit ``view`` (aspect kept, centred), with the face boxes on it."""
    import pygame

    if rgb is None:
        return
    ih, iw = rgb.shape[:2]
    scale = min(view.width / iw, view.height / ih)
    dw, dh = max(1, round(iw * scale)), max(1, round(ih * scale))
    dx, dy = view.left + (view.width - dw) // 2, view.top + (view.height - dh) // 2
    picture = pygame.image.frombuffer(np.ascontiguousarray(rgb[:, :, :3]).tobytes(), (iw, ih), "RGB")
    surface.blit(pygame.transform.scale(picture, (dw, dh)), (dx, dy))
    width = max(2, min(view.width, view.height) // 120)
    ordered = sorted(tracks, key=lambda t: t.served)  # the served box last, on top
    for t in ordered:
        b = t.box
        rect = pygame.Rect(
            dx + round(b.left * scale), dy + round(b.top * scale), round(b.width * scale), round(b.height * scale)
        )
        if t.served:
            pygame.draw.rect(surface, HIGHLIGHT, rect, width * 2)
        else:
            pygame.draw.rect(surface, OTHER_BOX, rect, width)


def _draw_result(
    surface: pygame.Surface, state: ScreenState, region: pygame.Rect, unit: int, blocks: list[TextBlock]
) -> None:
    outcome = state.outcome
    assert outcome is not None
    lang = state.language
    person = state.person
    name = person.name if person else ""
    nip = texts.text(lang, "nip", nip=outcome.nip) if outcome.nip else ""
    at = outcome.at or state.now
    when = texts.clock_text(at, state.tz)
    kind = texts.kind_label(lang, outcome.kind)
    status = outcome.status
    items: list[_Item]
    if status == "recorded":
        bg, fg = GREEN, WHITE
        items = [
            _Item("kind", kind, int(unit * 0.24), fg),
            _Item("name", name or nip, int(unit * 0.10), fg),
            _Item("nip", nip if name else "", int(unit * 0.07), fg),
            _Item("unit", person.unit if person else "", int(unit * 0.065), fg),
            _Item("time", when, int(unit * 0.09), fg),
            _Item("status", texts.text(lang, "recorded"), int(unit * 0.09), fg),
        ]
    elif status == "already":
        bg, fg = AMBER, BLACK
        items = [
            _Item("kind", kind, int(unit * 0.16), fg),
            _Item("name", name or nip, int(unit * 0.10), fg),
            _Item("nip", nip if name else "", int(unit * 0.07), fg),
            _Item("status", texts.text(lang, "already", time=f"{at:%H:%M}"), int(unit * 0.10), fg),
        ]
    elif status == "outside_hours":
        bg, fg = AMBER, BLACK
        items = [
            _Item("status", texts.text(lang, "outside_hours"), int(unit * 0.12), fg),
            _Item("name", name or nip, int(unit * 0.09), fg),
            _Item("time", when, int(unit * 0.09), fg),
        ]
    elif status == "not_recognised":
        bg, fg = RED, WHITE
        hint = "not_recognised_fallback" if state.view.fallback else "not_recognised_hint"
        items = [
            _Item("status", texts.text(lang, "not_recognised"), int(unit * 0.14), fg),
            _Item("hint", texts.text(lang, hint), int(unit * 0.075), fg),
        ]
    elif status == "not_live":  # neutral: a suspected spoof is for HR to judge, the screen accuses nobody
        bg, fg = AMBER, BLACK
        items = [
            _Item("status", texts.text(lang, "not_live"), int(unit * 0.14), fg),
            _Item("hint", texts.text(lang, "not_live_hint"), int(unit * 0.075), fg),
        ]
    elif status == "pending_review":
        bg, fg = BLUE, WHITE
        items = [
            _Item("status", texts.text(lang, "pending_review"), int(unit * 0.12), fg),
            _Item("name", name or nip, int(unit * 0.09), fg),
            _Item("nip", nip if name else "", int(unit * 0.07), fg),
            _Item("time", f"{kind}  {when}".strip(), int(unit * 0.08), fg),
            _Item("hint", texts.text(lang, "pending_review_hint"), int(unit * 0.065), fg),
        ]
    elif status == "limited":
        bg, fg = RED, WHITE
        items = [
            _Item("status", texts.text(lang, "limited"), int(unit * 0.11), fg),
            _Item("nip", nip, int(unit * 0.07), fg),
            _Item("hint", texts.text(lang, "limited_hint"), int(unit * 0.08), fg),
        ]
    elif status == "cannot_record" and outcome.storage == "failed":  # nothing can be stored: the paper list
        bg, fg = RED, WHITE
        items = [
            _Item("status", texts.text(lang, "cannot_record"), int(unit * 0.12), fg),
            _Item("name", name or nip, int(unit * 0.08), fg),
            _Item("nip", nip if name else "", int(unit * 0.07), fg),
            _Item("time", when, int(unit * 0.08), fg),
            _Item("hint", texts.text(lang, "problem_storage_failed_hint"), int(unit * 0.07), fg),
        ]
    else:  # cannot_record, and any status this screen does not know yet
        bg, fg = RED, WHITE
        items = [
            _Item("status", texts.text(lang, "cannot_record"), int(unit * 0.12), fg),
            _Item("name", name or nip, int(unit * 0.08), fg),
            _Item("hint", texts.text(lang, "cannot_record_hint"), int(unit * 0.08), fg),
        ]
    surface.fill(bg)
    _stack(surface, region, items, blocks)


def _draw_problem(
    surface: pygame.Surface, state: ScreenState, region: pygame.Rect, unit: int, blocks: list[TextBlock]
) -> None:
    """A problem stated for a person: what is wrong, what it means for them, and whom to call."""
    lang = state.language
    problem = state.view.blocking or "camera"
    bg, fg = (AMBER, BLACK) if problem == "gallery" else (RED, WHITE)
    fallback = state.view.fallback and problem == "gallery"  # with a working camera, the NIP entry still works
    hint = f"problem_{problem}_hint"  # what to do instead, when the problem has its own advice
    hint = "problem_fallback" if fallback else hint if hint in texts.TEXTS["id"] else "problem_hint"
    surface.fill(bg)
    _stack(
        surface,
        region,
        [
            _Item("status", texts.text(lang, f"problem_{problem}"), int(unit * 0.12), fg),
            _Item("detail", texts.text(lang, f"problem_{problem}_detail"), int(unit * 0.08), fg),
            _Item("hint", texts.text(lang, hint), int(unit * 0.07), fg),
            _Item("time", texts.clock_text(state.now, state.tz), int(unit * 0.08), fg),
        ],
        blocks,
    )


def keypad_layout(size: tuple[int, int]) -> tuple[pygame.Rect, dict[str, pygame.Rect]]:
    """Where the NIP entry draws its texts and each key (``0``-``9``, ``back``, ``ok``, ``cancel``) at ``size``.

    Landscape: texts on the left, keys on the right; portrait: texts above the keys. Keys are at least a finger's
    width on the official 800x480 touchscreen (about 11 mm each).
    """
    import pygame

    w, h = size
    margin = max(4, min(w, h) // 30)
    gap = max(3, min(w, h) // 60)
    if w >= h:
        text_rect = pygame.Rect(margin, margin, w * 45 // 100 - margin, h - 2 * margin)
        pad = pygame.Rect(w * 45 // 100 + margin, margin, w * 55 // 100 - 2 * margin, h - 2 * margin)
    else:
        text_rect = pygame.Rect(margin, margin, w - 2 * margin, h * 35 // 100 - margin)
        pad = pygame.Rect(margin, h * 35 // 100 + margin, w - 2 * margin, h * 65 // 100 - 2 * margin)
    rows = len(KEYPAD) + 1  # the cancel key has a row of its own
    key_w = (pad.width - gap * 2) // 3
    key_h = (pad.height - gap * (rows - 1)) // rows
    keys: dict[str, pygame.Rect] = {}
    for r, row in enumerate(KEYPAD):
        for c, key in enumerate(row):
            keys[key] = pygame.Rect(pad.left + c * (key_w + gap), pad.top + r * (key_h + gap), key_w, key_h)
    keys["cancel"] = pygame.Rect(pad.left, pad.top + len(KEYPAD) * (key_h + gap), pad.width, key_h)
    return text_rect, keys


def _draw_entry(surface: pygame.Surface, entry: EntryView, lang: str, blocks: list[TextBlock]) -> None:
    """The NIP keypad: the digits typed so far (grouped), a hint or the reason the last OK was refused, the keys."""
    import pygame

    w, h = surface.get_size()
    unit = min(w, h)
    surface.fill(IDLE_BG)
    text_rect, keys = keypad_layout((w, h))
    shown = texts.nip_digits(entry.digits) or "_"
    note = texts.text(lang, entry.error) if entry.error else texts.text(lang, "entry_hint")
    _stack(
        surface,
        text_rect,
        [
            _Item("title", texts.text(lang, "entry_title"), int(unit * 0.09), WHITE),
            _Item("digits", shown, int(unit * 0.10), HIGHLIGHT),
            _Item("count", f"{len(entry.digits)}/18", int(unit * 0.06), IDLE_DATE),
            _Item("note", note, int(unit * 0.055), AMBER if entry.error else IDLE_DATE),
        ],
        blocks,
    )
    labels = {"back": texts.text(lang, "key_back"), "ok": texts.text(lang, "key_ok")}
    labels["cancel"] = texts.text(lang, "key_cancel")
    for key, rect in keys.items():
        colour = KEY_OK if key == "ok" else KEY_CANCEL if key == "cancel" else KEY_BG
        pygame.draw.rect(surface, colour, rect, border_radius=max(2, rect.height // 8))
        label = _Item(f"key:{key}", labels.get(key, key), unit, WHITE)
        _stack(surface, rect.inflate(-rect.width // 8, -rect.height // 5), [label], blocks)


def text_fits(blocks: Sequence[TextBlock], size: tuple[int, int]) -> list[str]:
    """Problems with the drawn texts: a block outside the surface, or two blocks overlapping ([] when fine)."""
    w, h = size
    problems = []
    for b in blocks:
        x, y, bw, bh = b.rect
        if x < 0 or y < 0 or x + bw > w or y + bh > h:
            problems.append(f"{b.name} {b.text!r} at {b.rect} is outside the {w}x{h} screen")
    for i, a in enumerate(blocks):
        ax, ay, aw, ah = a.rect
        for b in blocks[i + 1 :]:
            bx, by, bw, bh = b.rect
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                problems.append(f"{a.name} {a.rect} overlaps {b.name} {b.rect}")
    return problems


class PygameScreen:
    """The wall screen: ``show`` never blocks; a ``screen`` thread draws the newest state at ``fps``.

    ``driver`` sets ``SDL_VIDEODRIVER`` (``kmsdrm`` on the Pi, ``dummy`` in tests) when given; otherwise the
    environment decides. ``now`` returns the aware current time (UTC is fine; it is shown in ``tz``);
    ``clock`` is the monotonic clock used to hold result panels for ``hold_s`` seconds.
    """

    def __init__(
        self,
        person: Callable[[str], Person | None],
        *,
        inputs: queue.Queue[str] | None = None,
        size: tuple[int, int] = (800, 480),
        office: str = "",
        tz: str = "Asia/Makassar",
        language: str = "id",
        driver: str | None = None,
        fullscreen: bool = False,
        fps: float = 15.0,
        hold_s: float = 4.0,
        snapshot_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if language not in texts.LANGUAGES:
            raise ValueError(f"unknown screen language {language!r}; use one of {', '.join(texts.LANGUAGES)}")
        if importlib.util.find_spec("pygame") is None:
            raise KioskError(
                "pygame is not installed: on Raspberry Pi OS `sudo apt install python3-pygame` (its SDL can draw "
                "on the console through kmsdrm; create the venv with --system-site-packages); on a desktop "
                "`pip install pygame`; or set display.backend to log"
            )
        self.person = person
        self.inputs: queue.Queue[str] = inputs if inputs is not None else queue.Queue(maxsize=64)
        self.size = size
        self.office = office
        self.tz = tz
        self.language = language
        self.driver = driver
        self.fullscreen = fullscreen
        self.fps = fps
        self.hold_s = hold_s
        self.snapshot_dir = snapshot_dir
        self.snapshots = 0
        self._clock = clock
        self._now = now
        self._zone = ZoneInfo(tz)
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._tracks: tuple[TrackView, ...] = ()
        self._outcome: Outcome | None = None
        self._outcome_at = 0.0
        self._view = TerminalView()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._closed = False
        self.frames_drawn = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="screen", daemon=True)
        self._thread.start()

    def show(self, frame: Frame, result: FrameResult, outcomes: list[Outcome]) -> None:
        """Keep the newest frame and result (dropping older ones); an outcome is held for ``hold_s``."""
        outcome = _headline(outcomes)
        if outcome is not None:
            log.info("screen: %s (%s)", outcome.status, outcome.message, extra={"nip": outcome.nip})
        at = self._clock()
        with self._lock:
            self._frame = frame.rgb
            self._tracks = tuple(result.tracks)
            if outcome is not None:
                self._outcome, self._outcome_at = outcome, at

    def update(self, view: TerminalView) -> None:
        """Keep the terminal's state; opening the NIP entry ends a result being held."""
        with self._lock:
            if view.entry is not None and self._view.entry is None:
                self._outcome = None
            self._view = view

    def state(self) -> ScreenState:
        """What the screen shows now (the render thread's view; also handy for tests)."""
        with self._lock:
            frame, tracks, outcome, at, view = self._frame, self._tracks, self._outcome, self._outcome_at, self._view
        if outcome is not None and self._clock() - at >= self.hold_s:
            outcome = None
        person = self.person(outcome.nip) if outcome is not None and outcome.nip else None
        return ScreenState(
            now=self._now().astimezone(self._zone),
            office=self.office,
            tz=self.tz,
            language=self.language,
            frame=frame,
            tracks=tracks,
            outcome=outcome,
            person=person,
            view=view,
        )

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Whether the window is open (or the thread gave up) within ``timeout`` seconds."""
        return self._ready.wait(timeout)

    def _run(self) -> None:
        import pygame

        try:
            if self.driver:
                os.environ["SDL_VIDEODRIVER"] = self.driver
            pygame.display.init()
            pygame.font.init()
            flags = pygame.FULLSCREEN if self.fullscreen else 0
            surface = pygame.display.set_mode(self.size, flags)
            pygame.display.set_caption("kiosk")
            pygame.mouse.set_visible(False)
        except Exception as e:  # no display: the kiosk keeps recording, the screen stays dark
            self.error = e
            log.error("screen: cannot open the display: %s", e)
            self._ready.set()
            return
        self._ready.set()
        period = 1.0 / self.fps
        shown: tuple[object, ...] = ()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                state = self.state()
                for event in pygame.event.get():
                    if event.type == pygame.QUIT:
                        log.info("screen: window close ignored (the kiosk stops with its service)")
                    name = input_for(event, state.view, self.size)
                    if name is not None:
                        self._put(name)
                render(surface, state)
                pygame.display.flip()
                self.frames_drawn += 1
                if self.snapshot_dir is not None and (state.screen, state.outcome, state.view) != shown:
                    shown = (state.screen, state.outcome, state.view)
                    self._snapshot(surface, state.screen)
                self._stop.wait(max(0.0, period - (time.monotonic() - started)))
        except Exception as e:
            self.error = e
            log.exception("screen: drawing failed; the screen stops, recognition goes on")
        finally:
            # Only the display: pygame.quit() would also quit the font module under fonts other threads hold.
            _local.fonts = None
            pygame.display.quit()

    def _snapshot(self, surface: pygame.Surface, screen: str) -> None:
        """Save what the screen shows now as ``<snapshot_dir>/NNNN-<screen>.png`` (at most MAX_SNAPSHOTS)."""
        import pygame

        assert self.snapshot_dir is not None
        if self.snapshots >= MAX_SNAPSHOTS:
            return
        self.snapshots += 1
        try:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            pygame.image.save(surface, str(self.snapshot_dir / f"{self.snapshots:04d}-{screen}.png"))
        except (OSError, pygame.error) as exc:
            log.error("screen: cannot save a snapshot in %s: %s", self.snapshot_dir, exc)
            self.snapshot_dir = None

    def _put(self, name: str) -> None:
        """Hand a touch or key to the main loop; a full queue drops the oldest (the person is tapping ahead)."""
        while True:
            try:
                self.inputs.put_nowait(name)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.inputs.get_nowait()

    def close(self) -> None:
        """Stop the render thread, wait for it and close the display; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)


_KEY_NAMES = {"backspace": "back", "delete": "back", "return": "ok", "enter": "ok", "escape": "cancel"}
_FUNCTION_KEYS = {"f1": "key_masuk", "f2": "key_pulang", "f3": "key_fallback"}


def input_for(event: Any, view: TerminalView, size: tuple[int, int]) -> str | None:
    """The input name for a pygame event: a key of the NIP keypad when it is open, ``touch`` for a tap elsewhere;
    from a keyboard or USB keypad: digits, Backspace, Enter, Escape, and F1/F2/F3 for the Masuk, Pulang and NIP
    keys. None for anything else."""
    import pygame

    pos: tuple[int, int] | None = None
    if event.type == pygame.FINGERDOWN:
        pos = (int(event.x * size[0]), int(event.y * size[1]))
    elif event.type == pygame.MOUSEBUTTONDOWN and not getattr(event, "touch", False):  # SDL mirrors touches
        pos = event.pos
    if pos is not None:
        if view.entry is None:
            return "touch"
        _, keys = keypad_layout(size)
        return next((k for k, rect in keys.items() if rect.collidepoint(pos)), None)
    if event.type == pygame.KEYDOWN:
        name = pygame.key.name(event.key).strip("[]")  # the numeric keypad's keys are "[5]", "enter", ...
        if name.isdigit() and len(name) == 1:
            return name
        return _KEY_NAMES.get(name) or _FUNCTION_KEYS.get(name)
    return None


_PRIORITY = {
    "recorded": 0,
    "pending_review": 0,
    "already": 1,
    "outside_hours": 2,
    "limited": 3,
    "cannot_record": 3,
    "not_recognised": 4,
    "not_live": 4,
}


def _headline(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The one outcome to show when a frame decided several tracks: a person's result before an unknown face."""
    if not outcomes:
        return None
    return min(outcomes, key=lambda o: _PRIORITY.get(o.status, 9))


def sample_states(language: str = "id", tz: str = "Asia/Makassar") -> dict[str, ScreenState]:
    """One synthetic state per screen (no real faces): for screenshots, docs and tests."""
    from kiosk.events.recorder import STORAGE_FAILED, Outcome
    from kiosk.recognizer.faces import Box
    from kiosk.recognizer.pipeline import TrackView
    from kiosk_contract.gallery import Person

    zone = ZoneInfo(tz)
    now = datetime(2026, 11, 30, 7, 28, tzinfo=zone)
    office = "Badan Kepegawaian dan Pengembangan SDM Kabupaten Contoh"
    person = Person(
        nip="198507142010012003",
        name="Siti Rahmawati, S.Kom.",
        unit="Bidang Pengadaan, Pemberhentian dan Informasi Kepegawaian",
        templates=np.zeros((1, 128), np.float32),
    )
    picture = np.full((480, 640, 3), 96, np.uint8)  # a synthetic grey scene with a lighter "face" patch
    picture[140:320, 250:390] = 150
    tracks = (
        TrackView(1, Box(130, 400, 330, 240), True, None, "searching", ("too_small",)),
        TrackView(2, Box(200, 600, 300, 520), False, None, "searching", ()),
    )
    base = ScreenState(now=now, office=office, tz=tz, language=language)
    online = TerminalView(network="online", fallback=True)
    nip = person.nip

    def result(o: Outcome, who: Person | None = person) -> ScreenState:
        return replace(base, outcome=o, person=who, view=online)

    def problem(name: str) -> ScreenState:
        return replace(base, view=replace(online, problems=(name,)))

    return {
        "idle": replace(base, view=online),
        "idle_offline": replace(
            base, view=TerminalView(network="offline", pending=37, problems=("clock",), chosen_kind="pulang")
        ),
        "live": replace(base, frame=picture, tracks=tracks, view=online),
        "live_challenge": replace(
            base, frame=picture, tracks=(replace(tracks[0], problems=("challenge_turn_left",)), tracks[1]), view=online
        ),
        "recorded": result(Outcome("recorded", "Presensi tercatat", nip=nip, kind="masuk", at=now)),
        "already": result(
            Outcome("already", "Sudah tercatat pukul 07:21", nip=nip, kind="masuk", at=now.replace(minute=21))
        ),
        "not_recognised": result(Outcome("not_recognised", "Wajah tidak dikenali"), None),
        "not_live": result(Outcome("not_live", "Silakan coba lagi"), None),
        "outside_hours": result(Outcome("outside_hours", "Di luar jam presensi", nip=nip, at=now)),
        "cannot_record": result(Outcome("cannot_record", "Presensi tidak dapat disimpan: hubungi petugas TI", nip=nip)),
        "entry": replace(base, view=replace(online, entry=EntryView("19850714201001"))),
        "entry_error": replace(base, view=replace(online, entry=EntryView("1985071420100", "nip_length"))),
        "pending_review": result(Outcome("pending_review", "Menunggu verifikasi", nip=nip, kind="masuk", at=now)),
        "limited": result(Outcome("limited", "Batas presensi manual tercapai", nip=nip), None),
        "problem_camera": problem("camera"),
        "problem_gallery": problem("gallery"),
        "problem_storage": problem("storage"),
        "problem_storage_failed": problem("storage_failed"),
        "cannot_record_storage_failed": result(Outcome("cannot_record", STORAGE_FAILED, nip=nip, storage="failed")),
        "asleep": replace(base, view=replace(online, asleep=True)),
    }


def screenshots(
    out_dir: Path | str,
    sizes: Iterable[tuple[int, int]] = DEFAULT_SIZES,
    *,
    language: str = "id",
    screens: Iterable[str] = SCREENS,
) -> dict[Path, list[str]]:
    """Render every screen at each size to ``<out_dir>/<screen>-<w>x<h>.png``; returns each file's fit problems."""
    import pygame

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    states = sample_states(language)
    wanted = list(screens)
    report: dict[Path, list[str]] = {}
    for w, h in sizes:
        surface = pygame.Surface((w, h))
        for name in wanted:
            blocks = render(surface, states[name])
            path = out / f"{name}-{w}x{h}.png"
            pygame.image.save(surface, str(path))
            report[path] = text_fits(blocks, (w, h))
    return report
