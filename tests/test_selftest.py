"""`kiosk selftest` on this machine: the replay camera and SDL's dummy screen, so every hardware check is skipped
with its reason; the card, the gallery, the keys and a real TLS broker are checked for real, and the recognizer
benchmark runs the real pipeline on the Hamilton clip. A failing check names what to do; --publish stores a status
event that the contract accepts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from broker import Broker, available
from conftest import EXAMPLES, need

from kiosk.cli import main
from kiosk_contract import schema, signing

HARDWARE = ("numpy_abi", "camera", "screen", "gpio", "otp_key")
ORDER = ["numpy_abi", "camera", "screen", "gpio", "otp_key", "time_sync", "disk", "broker", "gallery", "signing_key",
         "recognizer"]


def _config(tmp_path: Path, gallery: Path, extra: str = "") -> Path:
    clip = need(EXAMPLES / "short_hamilton_clip.mp4")
    config = tmp_path / "kiosk.toml"
    (tmp_path / "state").mkdir(exist_ok=True)  # the kiosk's StateDirectory=
    config.write_text(f'[device]\nid = "kiosk-selftest"\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[camera]\nsource = "replay"\npath = "{clip}"\n'
                      f'[recognizer]\ngallery = "{gallery}"\n[display]\nbackend = "pygame"\n{extra}')
    return config


def _run(config: Path, out: Path, *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    status = main(["selftest", "--config", str(config), "--json", str(out), "--seconds", "6", *extra])
    return status, json.loads(out.read_text()), out.read_text()


@pytest.fixture(autouse=True)
def _dummy_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")


def test_here_every_hardware_check_is_skipped_with_its_reason_and_the_rest_is_checked(
        hamilton_gallery: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, data, _ = _run(_config(tmp_path, hamilton_gallery), tmp_path / "report.json")
    printed = capsys.readouterr().out
    checks = {c["name"]: c for c in data["checks"]}
    assert [c["name"] for c in data["checks"]] == ORDER
    for name in HARDWARE:
        assert checks[name]["status"] == "skipped" and checks[name]["detail"], checks[name]
        assert f"[skip] {name}" in printed
    assert "camera.source = \"replay\"" in checks["camera"]["detail"]
    assert "SDL_VIDEODRIVER=dummy" in checks["screen"]["detail"]
    assert checks["disk"]["status"] == "ok" and checks["disk"]["figures"]["commit_ms_median"] > 0
    assert checks["gallery"]["status"] == "ok" and checks["gallery"]["figures"]["people"] == 2
    bench = checks["recognizer"]
    assert bench["status"] == "ok" and bench["figures"]["frames"] > 0 and bench["figures"]["detect_ms"] > 0
    assert bench["figures"]["encode_ms"] > 0, "a face of the clip was encoded"
    assert set(data["benchmark"]["comparison"]) == {"detect_ms", "encode_ms", "cpu_ms_per_frame", "decision_ms",
                                                    "fps"}
    assert "recognizer beside the development machine" in printed
    assert status == (1 if data["result"] == "failed" else 0)
    assert data["result"] == ("failed" if any(c["status"] == "failed" for c in data["checks"]) else "ok")


def test_a_failing_check_says_what_to_do_and_fails_the_run(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    status, data, _ = _run(_config(tmp_path, tmp_path / "missing.kgal"), tmp_path / "report.json", "--clip",
                           str(tmp_path / "no-clip.mp4"))
    printed = capsys.readouterr().out
    gallery = next(c for c in data["checks"] if c["name"] == "gallery")
    assert status == 1 and data["result"] == "failed"
    assert gallery["status"] == "failed" and "does not exist" in gallery["detail"]
    assert "kiosk gallery seal" in gallery["action"] and f"-> {gallery['action']}" in printed
    bench = next(c for c in data["checks"] if c["name"] == "recognizer")
    assert bench["status"] == "skipped" and "no walk-up clip" in bench["detail"]
    assert "result: FAILED: gallery" in printed


@pytest.mark.skipif(not available(), reason="mosquitto is not installed")
def test_the_broker_check_connects_with_the_device_certificate(hamilton_gallery: Path, tmp_path: Path) -> None:
    private, _public = signing.generate_key()
    (tmp_path / "device.key").write_bytes(private)
    (tmp_path / "device.key").chmod(0o600)
    (tmp_path / "central.pub").write_bytes(signing.generate_key()[1])
    with Broker(tmp_path / "broker", tls=True) as broker:
        cert, key = broker.client_cert("kiosk-selftest")
        key.chmod(0o600)
        mqtt = (f'[events]\nsigning_key_file = "{tmp_path / "device.key"}"\n'
                f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\ntls_ca_file = "{broker.ca_file}"\n'
                f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\ncentral_key_file = "{tmp_path / "central.pub"}"\n')
        config = _config(tmp_path, hamilton_gallery, mqtt)
        config.write_text(config.read_text().replace('[camera]', 'office_code = "bkpsdm"\n[camera]'))
        _, data, _ = _run(config, tmp_path / "report.json", "--clip", str(tmp_path / "none.mp4"))
        port = broker.port
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["broker"]["status"] == "ok", checks["broker"]
    assert f"connected to 127.0.0.1:{port} over TLS as kiosk-selftest" in checks["broker"]["detail"]
    key_id = signing.key_id_of(signing.private_key_from_pem(private))
    assert checks["signing_key"]["status"] == "ok" and checks["signing_key"]["figures"]["key_id"] == key_id
    # the broker gone: the check fails and names what to look at
    _, data, _ = _run(config, tmp_path / "report.json", "--clip", str(tmp_path / "none.mp4"))
    broker_check = next(c for c in data["checks"] if c["name"] == "broker")
    assert broker_check["status"] == "failed" and f"127.0.0.1:{port}" in broker_check["detail"]
    assert "8883" in broker_check["action"]


def test_publish_stores_a_status_event_with_the_summary_once_the_kiosk_is_stopped(
        hamilton_gallery: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk.events.outbox import Outbox

    config = _config(tmp_path, hamilton_gallery)
    with Outbox.open(tmp_path / "state/outbox.sqlite"):  # the running kiosk holds its outbox
        status, _, _ = _run(config, tmp_path / "report.json", "--publish", "--clip", str(tmp_path / "none.mp4"))
    assert status == 1 and "stop the kiosk first (systemctl stop kiosk)" in capsys.readouterr().err
    status, data, text = _run(config, tmp_path / "report.json", "--publish", "--clip", str(tmp_path / "none.mp4"))
    assert "published: status event seq" in capsys.readouterr().out
    with Outbox.open(tmp_path / "state/outbox.sqlite") as outbox:
        (stored,) = [e for e in outbox.pending(limit=10) if e.kind == "status"]
    event = json.loads(stored.payload)
    assert schema.validate(event, complete=False) == []
    assert event["selftest"]["report_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert event["selftest"]["result"] == data["result"] and event["device"] == "kiosk-selftest"
    assert set(event["selftest"]["skipped"]) >= set(HARDWARE) | {"recognizer"}
    assert event["gallery_version"] == "1"
