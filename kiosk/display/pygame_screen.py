"""The terminal's own screen, drawn with pygame: idle clock, live camera view, and result panels.

Recognition never waits for drawing: :meth:`PygameScreen.show` only stores the newest frame, tracks and outcome
(older ones are dropped) and a dedicated ``screen`` thread renders at its own pace and pumps pygame's events.
:func:`render` is the drawing itself, a function of a surface and a :class:`ScreenState`, so tests and
:func:`screenshots` draw deterministically without the thread. Every size and font is computed from the surface
size, and pygame's default font is used, so no font files are needed (see docs/screen.md).

pygame is imported lazily so that the rest of :mod:`kiosk.display` works without it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from kiosk.display import texts
from kiosk.errors import KioskError

if TYPE_CHECKING:
    import pygame

    from kiosk.camera import Frame
    from kiosk.events.recorder import Outcome
    from kiosk.recognizer.gallery import Person
    from kiosk.recognizer.pipeline import FrameResult, TrackView

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

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((800, 480), (1024, 600), (1920, 1080), (480, 800))
SCREENS: tuple[str, ...] = ("idle", "live", "recorded", "already", "not_recognised", "outside_hours", "cannot_record")


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

    @property
    def screen(self) -> str:
        """Which screen this state shows: an outcome's status, ``live`` with faces in view, else ``idle``."""
        if self.outcome is not None:
            return self.outcome.status
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
    blocks: list[TextBlock] = []
    screen = state.screen
    local = state.now
    if screen == "idle":
        surface.fill(IDLE_BG)
        bar_h = max(24, h // 6)
        bar = pygame.Rect(0, h - bar_h, w, bar_h)
        surface.fill(BAR_BG, bar)
        top = pygame.Rect(margin, margin, inner_w, h - bar_h - 2 * margin)
        _stack(
            surface,
            top,
            [
                _Item("office", state.office, int(unit * 0.08), WHITE),
                _Item("clock", texts.clock_text(local, state.tz), int(unit * 0.30), WHITE),
                _Item("date", texts.date_text(local, lang), int(unit * 0.095), IDLE_DATE),
            ],
            blocks,
        )
        _stack(
            surface,
            bar.inflate(-2 * margin, -bar_h // 8),
            [_Item("instruction", texts.text(lang, "look"), int(unit * 0.09), WHITE)],
            blocks,
        )
        return blocks
    if screen == "live":
        surface.fill(LIVE_BG)
        bar_h = max(24, h // 7)
        view = pygame.Rect(0, 0, w, h - bar_h)
        _draw_frame(surface, view, state.frame, state.tracks)
        bar = pygame.Rect(0, h - bar_h, w, bar_h)
        surface.fill(BAR_BG, bar)
        served = next((t for t in state.tracks if t.served), None)
        line = texts.guidance(lang, served.problems) if served else None
        if line is None:
            line = texts.text(lang, "searching" if served else "look")
        _stack(
            surface, bar.inflate(-2 * margin, -bar_h // 8), [_Item("guidance", line, int(unit * 0.09), WHITE)], blocks
        )
        return blocks
    _draw_result(surface, state, pygame.Rect(margin, margin, inner_w, h - 2 * margin), unit, blocks)
    return blocks


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
        items = [
            _Item("status", texts.text(lang, "not_recognised"), int(unit * 0.14), fg),
            _Item("hint", texts.text(lang, "not_recognised_hint"), int(unit * 0.075), fg),
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
        size: tuple[int, int] = (800, 480),
        office: str = "",
        tz: str = "Asia/Makassar",
        language: str = "id",
        driver: str | None = None,
        fullscreen: bool = False,
        fps: float = 15.0,
        hold_s: float = 4.0,
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
        self.size = size
        self.office = office
        self.tz = tz
        self.language = language
        self.driver = driver
        self.fullscreen = fullscreen
        self.fps = fps
        self.hold_s = hold_s
        self._clock = clock
        self._now = now
        self._zone = ZoneInfo(tz)
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._tracks: tuple[TrackView, ...] = ()
        self._outcome: Outcome | None = None
        self._outcome_at = 0.0
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
        at = self._clock()
        with self._lock:
            self._frame = frame.rgb
            self._tracks = tuple(result.tracks)
            if outcome is not None:
                self._outcome, self._outcome_at = outcome, at

    def state(self) -> ScreenState:
        """What the screen shows now (the render thread's view; also handy for tests)."""
        with self._lock:
            frame, tracks, outcome, at = self._frame, self._tracks, self._outcome, self._outcome_at
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
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                for event in pygame.event.get():
                    if event.type == pygame.QUIT:
                        log.info("screen: window close ignored (the kiosk stops with its service)")
                render(surface, self.state())
                pygame.display.flip()
                self.frames_drawn += 1
                self._stop.wait(max(0.0, period - (time.monotonic() - started)))
        except Exception as e:
            self.error = e
            log.exception("screen: drawing failed; the screen stops, recognition goes on")
        finally:
            # Only the display: pygame.quit() would also quit the font module under fonts other threads hold.
            _local.fonts = None
            pygame.display.quit()

    def close(self) -> None:
        """Stop the render thread, wait for it and close the display; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)


_PRIORITY = {"recorded": 0, "already": 1, "outside_hours": 2, "cannot_record": 3, "not_recognised": 4}


def _headline(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The one outcome to show when a frame decided several tracks: a person's result before an unknown face."""
    if not outcomes:
        return None
    return min(outcomes, key=lambda o: _PRIORITY.get(o.status, 9))


def sample_states(language: str = "id", tz: str = "Asia/Makassar") -> dict[str, ScreenState]:
    """One synthetic state per screen (no real faces): for screenshots, docs and tests."""
    from kiosk.events.recorder import Outcome
    from kiosk.recognizer.faces import Box
    from kiosk.recognizer.gallery import Person
    from kiosk.recognizer.pipeline import TrackView

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
    nip = person.nip

    def result(o: Outcome) -> ScreenState:
        return ScreenState(now=now, office=office, tz=tz, language=language, outcome=o, person=person)

    return {
        "idle": base,
        "live": ScreenState(now=now, office=office, tz=tz, language=language, frame=picture, tracks=tracks),
        "recorded": result(Outcome("recorded", "Presensi tercatat", nip=nip, kind="masuk", at=now)),
        "already": result(
            Outcome("already", "Sudah tercatat pukul 07:21", nip=nip, kind="masuk", at=now.replace(minute=21))
        ),
        "not_recognised": ScreenState(
            now=now, office=office, tz=tz, language=language, outcome=Outcome("not_recognised", "Wajah tidak dikenali")
        ),
        "outside_hours": result(Outcome("outside_hours", "Di luar jam presensi", nip=nip, at=now)),
        "cannot_record": result(Outcome("cannot_record", "Presensi tidak dapat disimpan: hubungi petugas TI", nip=nip)),
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
