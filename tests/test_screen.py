"""The pygame terminal screen: every screen fits at every size, the clock and date, and a non-blocking show()."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
import pygame
from conftest import EXAMPLES, need

from kiosk.camera import Frame
from kiosk.display import texts
from kiosk.display.pygame_screen import (
    DEFAULT_SIZES,
    HIGHLIGHT,
    SCREENS,
    PygameScreen,
    ScreenState,
    TextBlock,
    input_for,
    keypad_layout,
    render,
    sample_states,
    screenshots,
    text_fits,
)
from kiosk.events.recorder import Outcome
from kiosk.recognizer.faces import Box
from kiosk.recognizer.pipeline import FrameResult, TrackView
from kiosk.terminal import EntryView, TerminalView

WITA = ZoneInfo("Asia/Makassar")
SCREEN_OF = {
    "idle_offline": "idle",
    "entry_error": "entry",
    "live_challenge": "live",
    "cannot_record_storage_failed": "cannot_record",
} | {f"problem_{p}": "problem" for p in ("camera", "gallery", "storage", "storage_failed")}


@pytest.fixture(autouse=True)
def dummy_video(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    pygame.font.init()


@pytest.mark.parametrize("language", ["id", "en"])
@pytest.mark.parametrize("size", DEFAULT_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", SCREENS)
def test_every_screen_fits_at_every_size(screen: str, size: tuple[int, int], language: str) -> None:
    state = sample_states(language)[screen]
    assert state.screen == SCREEN_OF.get(screen, screen)
    blocks = render(pygame.Surface(size), state)
    assert blocks, "something is written on every screen"
    assert text_fits(blocks, size) == []
    smallest = min(size) * 0.03  # large type: no text is shrunk to a crumb
    assert all(b.rect[3] >= smallest for b in blocks), blocks


def test_text_fits_reports_outside_and_overlap() -> None:
    inside = TextBlock("a", "x", (10, 10, 50, 20))
    assert text_fits([inside], (100, 100)) == []
    assert "outside" in text_fits([TextBlock("b", "x", (90, 10, 50, 20))], (100, 100))[0]
    assert "overlaps" in text_fits([inside, TextBlock("c", "y", (40, 20, 10, 10))], (100, 100))[0]
    assert text_fits([inside, TextBlock("d", "y", (10, 30, 50, 20))], (100, 100)) == []  # touching is fine


def texts_of(blocks: list[TextBlock]) -> dict[str, str]:
    return {b.name: b.text for b in blocks}


def test_idle_shows_wita_clock_and_indonesian_date() -> None:
    now = datetime(2026, 11, 29, 23, 28, tzinfo=UTC)  # 07:28 on Monday 30 November in Makassar
    state = ScreenState(now=now.astimezone(WITA), office="Kantor Contoh")
    shown = texts_of(render(pygame.Surface((800, 480)), state))
    assert shown["clock"] == "07:28 WITA"
    assert shown["date"] == "Senin, 30 November 2026"
    assert shown["office"] == "Kantor Contoh"
    assert shown["instruction"] == "Silakan lihat ke kamera"
    english = texts_of(render(pygame.Surface((800, 480)), ScreenState(now=now.astimezone(WITA), language="en")))
    assert english["date"] == "Monday, 30 November 2026"
    jakarta = datetime(2026, 8, 17, 9, 5, tzinfo=ZoneInfo("Asia/Jakarta"))
    assert texts.clock_text(jakarta, "Asia/Jakarta") == "09:05 WIB"
    assert texts.date_text(jakarta, "id") == "Senin, 17 Agustus 2026"


@pytest.mark.parametrize(
    ("problems", "line"),
    [
        (("too_small",), "Mendekatlah ke kamera"),
        (("too_dark",), "Terlalu gelap"),
        (("blurry",), "Tahan diam sebentar"),
        (("not_frontal",), "Lihat lurus ke kamera"),
        ((), "Mengenali wajah..."),
        (("challenge_blink",), "Silakan berkedip"),
        (("challenge_turn_left",), "Tolehkan kepala ke kiri"),
        (("challenge_turn_right",), "Tolehkan kepala ke kanan"),
    ],
)
def test_live_guidance_line(problems: tuple[str, ...], line: str) -> None:
    track = TrackView(1, Box(100, 300, 300, 100), True, None, "searching", problems)
    state = ScreenState(now=datetime(2026, 11, 30, 7, 28, tzinfo=WITA), frame=grey(), tracks=(track,))
    assert texts_of(render(pygame.Surface((800, 480)), state))["guidance"] == line


def test_result_panels_say_what_happened() -> None:
    states = sample_states()
    size = (1024, 600)
    recorded = texts_of(render(pygame.Surface(size), states["recorded"]))
    assert recorded["kind"] == "MASUK"
    assert recorded["status"] == "Presensi tercatat"
    assert recorded["nip"] == "NIP 198507142010012003"
    assert recorded["time"] == "07:28 WITA"
    assert texts_of(render(pygame.Surface(size), states["already"]))["status"] == "Sudah tercatat pukul 07:21"
    assert texts_of(render(pygame.Surface(size), states["not_recognised"]))["status"] == "Wajah tidak dikenali"
    not_live = texts_of(render(pygame.Surface(size), states["not_live"]))
    assert not_live["status"] == "Silakan coba lagi" and "nip" not in not_live, "a suspected spoof names nobody"
    surface = pygame.Surface(size)
    render(surface, states["recorded"])
    assert surface.get_at((2, 2))[:3] == (0, 118, 52)  # green
    render(surface, states["already"])
    assert surface.get_at((2, 2))[:3] == (240, 168, 0)  # amber
    render(surface, states["cannot_record"])
    assert surface.get_at((2, 2))[:3] == (168, 18, 24)  # red


def grey(h: int = 480, w: int = 640) -> np.ndarray:
    return np.full((h, w, 3), 90, np.uint8)


def served_edge_pixel(surface: pygame.Surface, rgb: np.ndarray, box: Box, view_h: int) -> tuple[int, int]:
    """Where the served box's left edge lands on the screen (mid-height), given the live layout's picture area."""
    w, _ = surface.get_size()
    ih, iw = rgb.shape[:2]
    scale = min(w / iw, view_h / ih)
    dx = (w - round(iw * scale)) // 2
    dy = (view_h - round(ih * scale)) // 2
    return dx + round(box.left * scale) + 1, dy + round((box.top + box.bottom) / 2 * scale)


def test_live_frame_from_a_real_photo_draws_the_served_box() -> None:
    from PIL import Image

    photo = need(EXAMPLES / "obama.jpg")
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    h, w = rgb.shape[:2]
    box = Box(h // 4, 3 * w // 4, 3 * h // 4, w // 4)
    served = TrackView(1, box, True, None, "searching", ("blurry",))
    state = ScreenState(now=datetime(2026, 11, 30, 7, 28, tzinfo=WITA), frame=rgb, tracks=(served,))
    surface = pygame.Surface((800, 480))
    blocks = render(surface, state)
    assert texts_of(blocks)["guidance"] == "Tahan diam sebentar"
    assert text_fits(blocks, (800, 480)) == []
    view_h = 480 - max(24, 480 // 7)
    assert surface.get_at(served_edge_pixel(surface, rgb, box, view_h))[:3] == HIGHLIGHT


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_show_never_blocks_and_close_twice() -> None:
    clock = Clock()
    screen = PygameScreen(
        lambda nip: None, size=(480, 320), driver="dummy", fps=60, hold_s=3.0, clock=clock, office="Kantor Contoh"
    )
    try:
        assert screen.wait_ready(10)
        assert screen.error is None
        frame = Frame(rgb=grey(), index=0, t=0.0)
        track = TrackView(1, Box(100, 300, 300, 100), True, None, "searching", ())
        result = FrameResult(tracks=[track], decisions=[])
        worst = 0.0
        done = threading.Event()

        def producer() -> None:
            nonlocal worst
            for _ in range(300):
                started = time.perf_counter()
                screen.show(frame, result, [])
                worst = max(worst, time.perf_counter() - started)
            done.set()

        threading.Thread(target=producer, name="recognizer").start()
        assert done.wait(10)
        assert worst < 0.05, f"show() took {worst * 1000:.1f} ms"
        deadline = time.monotonic() + 10
        while screen.frames_drawn < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert screen.frames_drawn >= 3, "the screen thread draws on its own"
        assert screen.state().screen == "live"
        screen.show(frame, FrameResult(tracks=[], decisions=[]), [Outcome("not_recognised", "Wajah tidak dikenali")])
        assert screen.state().screen == "not_recognised"  # held ...
        clock.t += 3.5
        assert screen.state().screen == "idle"  # ... for hold_s, then back to the clock
        assert any(t.name == "screen" for t in threading.enumerate())
    finally:
        screen.close()
        screen.close()
    assert not any(t.name == "screen" and t.is_alive() for t in threading.enumerate())
    assert screen.error is None


def test_headline_outcome_prefers_a_person() -> None:
    clock = Clock()
    screen = PygameScreen(lambda nip: None, driver="dummy", clock=clock)
    try:
        frame = Frame(rgb=grey(), index=0, t=0.0)
        outcomes = [
            Outcome("not_recognised", "Wajah tidak dikenali"),
            Outcome(
                "recorded", "Presensi tercatat", nip="1", kind="pulang", at=datetime(2026, 11, 30, 16, 5, tzinfo=WITA)
            ),
        ]
        screen.show(frame, FrameResult(tracks=[], decisions=[]), outcomes)
        state = screen.state()
    finally:
        screen.close()
    assert state.screen == "recorded"
    assert texts_of(render(pygame.Surface((800, 480)), state))["kind"] == "PULANG"


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        PygameScreen(lambda nip: None, language="jv")


def test_screenshots(tmp_path) -> None:
    report = screenshots(tmp_path, sizes=[(800, 480), (480, 800)])
    assert len(report) == 2 * len(SCREENS)
    for path, problems in report.items():
        assert path.exists() and path.stat().st_size < 100_000
        assert problems == []


def test_missing_pygame_is_a_clear_error_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from kiosk.errors import KioskError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pygame" else real(name, *a))
    with pytest.raises(KioskError, match="python3-pygame"):
        PygameScreen(lambda nip: None)


@pytest.mark.parametrize("size", DEFAULT_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_keypad_keys_are_inside_apart_and_finger_sized(size: tuple[int, int]) -> None:
    text_rect, keys = keypad_layout(size)
    assert sorted(keys) == sorted([*"0123456789", "back", "ok", "cancel"])
    screen = pygame.Rect((0, 0), size)
    rects = [text_rect, *keys.values()]
    assert all(screen.contains(r) for r in rects)
    assert all(not a.colliderect(b) for i, a in enumerate(rects) for b in rects[i + 1 :])
    assert min(min(r.width, r.height) for r in keys.values()) >= 60  # >= 11 mm on the official 7" touchscreen


def test_touches_and_keys_become_inputs() -> None:
    size = (800, 480)
    idle, typing = TerminalView(fallback=True), TerminalView(entry=EntryView("1985"))
    _, keys = keypad_layout(size)

    def tap(pos: tuple[int, int], touch: bool = False) -> pygame.event.Event:
        return pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=pos, button=1, touch=touch)

    def key(k: int) -> pygame.event.Event:
        return pygame.event.Event(pygame.KEYDOWN, key=k, mod=0, unicode="", scancode=0)

    assert input_for(tap((10, 10)), idle, size) == "touch"
    assert input_for(tap(keys["7"].center), typing, size) == "7"
    assert input_for(tap(keys["ok"].center), typing, size) == "ok"
    assert input_for(tap((keys["7"].right + 1, keys["7"].top)), typing, size) is None, "between two keys"
    assert input_for(tap(keys["7"].center, touch=True), typing, size) is None, "SDL's mouse copy of a touch"
    cancel = keys["cancel"].center
    finger = pygame.event.Event(pygame.FINGERDOWN, x=cancel[0] / size[0], y=cancel[1] / size[1], touch_id=0,
                                finger_id=0, dx=0.0, dy=0.0, pressure=1.0)
    assert input_for(finger, typing, size) == "cancel"
    expected = {pygame.K_5: "5", pygame.K_KP5: "5", pygame.K_BACKSPACE: "back", pygame.K_RETURN: "ok",
                pygame.K_KP_ENTER: "ok", pygame.K_ESCAPE: "cancel", pygame.K_F1: "key_masuk",
                pygame.K_F2: "key_pulang", pygame.K_F3: "key_fallback", pygame.K_a: None}
    assert {k: input_for(key(k), typing, size) for k in expected} == expected


def test_the_screen_hands_touches_to_the_main_loop_and_shows_the_entry() -> None:
    import queue

    inputs: queue.Queue[str] = queue.Queue()
    screen = PygameScreen(lambda nip: None, inputs=inputs, size=(800, 480), driver="dummy", fps=50)
    try:
        assert screen.wait_ready() and screen.error is None
        screen.show(Frame(rgb=grey(), index=0, t=0.0), FrameResult([], []),
                    [Outcome("not_recognised", "Wajah tidak dikenali")])
        assert screen.state().screen == "not_recognised"
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(400, 240), button=1, touch=False))
        assert inputs.get(timeout=5.0) == "touch"
        screen.update(TerminalView(entry=EntryView("19")))
        assert screen.state().screen == "entry", "opening the entry ends the result being held"
        screen.update(TerminalView(problems=("storage",)))
        assert screen.state().screen == "problem"
    finally:
        screen.close()


def test_the_screens_command_writes_every_screen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk.cli import main

    assert main(["screens", "--out", str(tmp_path), "--size", "800x480", "--size", "480x800"]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{s}-{w}x{h}.png" for s in SCREENS for w, h in ((800, 480), (480, 800)))
    assert pygame.image.load(str(tmp_path / "entry-480x800.png")).get_size() == (480, 800)
    assert capsys.readouterr().out.count(": ok\n") == len(files)


def test_snapshots_follow_what_the_screen_shows(tmp_path: Path) -> None:
    screen = PygameScreen(lambda nip: None, size=(800, 480), driver="dummy", fps=50, snapshot_dir=tmp_path / "s")
    try:
        assert screen.wait_ready()
        screen.show(Frame(rgb=grey(), index=0, t=0.0), FrameResult([], []),
                    [Outcome("not_recognised", "Wajah tidak dikenali")])
        shown = screen.frames_drawn
        deadline = time.monotonic() + 5.0
        while screen.frames_drawn < shown + 10 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        screen.close()
    names = [p.name for p in sorted((tmp_path / "s").iterdir())]
    assert names[-1].endswith("-not_recognised.png"), names
    assert len(names) <= 2 < screen.frames_drawn, "one file per change (idle, then the result), not per frame"
