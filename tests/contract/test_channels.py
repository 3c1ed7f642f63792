"""Channels of changing commands: each has its own retained topic (a broker keeps one retained message per topic) and
its own applied version, so that a schedule push neither replaces a gallery push at the broker nor makes it look like
a replay on the kiosk."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk_contract import signing
from kiosk_contract.commands import CHANGING, CHANNELS, CommandRefused, Target, build_command, channel_of, check_command
from kiosk_contract.topics import DEVICE_READS, DEVICE_WRITES, Topics, mosquitto_acl, parse

CENTRAL = Ed25519PrivateKey.generate()
KEYS = {signing.key_id_of(CENTRAL): CENTRAL.public_key()}
NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def test_every_changing_command_belongs_to_exactly_one_channel() -> None:
    assert dict(CHANNELS) == {"gallery": ("install_gallery", "remove_people", "reload_gallery"),
                              "schedule": ("install_schedule",)}
    assert CHANGING == ("install_gallery", "remove_people", "reload_gallery", "install_schedule")
    assert {name: channel_of(name) for name in CHANGING} == {
        "install_gallery": "gallery", "remove_people": "gallery", "reload_gallery": "gallery",
        "install_schedule": "schedule"}
    for name in ("ping", "status", "resend", "reboot"):
        with pytest.raises(ValueError, match="not a command that changes the device"):
            channel_of(name)
    with pytest.raises(TypeError):
        CHANNELS["other"] = ("x",)  # type: ignore[index]


def test_each_channel_has_its_own_retained_topic_beside_the_plain_command_topic() -> None:
    topics = Topics.of("presensi/v1", "kantor", "kiosk-1")
    assert topics.cmd == "presensi/v1/kantor/kiosk-1/cmd"
    assert topics.channels == {"gallery": "presensi/v1/kantor/kiosk-1/cmd/set/gallery",
                               "schedule": "presensi/v1/kantor/kiosk-1/cmd/set/schedule"}
    assert len({topics.cmd, topics.cmd_result, *topics.channels.values()}) == 4
    assert parse(topics.channel("schedule")) == ("kantor", "kiosk-1", "cmd/set/schedule")
    with pytest.raises(ValueError, match="no command channel 'people'"):
        topics.channel("people")


def test_the_acl_lets_a_device_read_its_channels_by_name_and_write_none_of_them() -> None:
    acl = mosquitto_acl("presensi/v1").splitlines()
    reads = [line for line in acl if line.startswith("pattern read ")]
    writes = [line for line in acl if line.startswith("pattern write ")]
    assert reads == ["pattern read presensi/v1/+/%u/ack", "pattern read presensi/v1/+/%u/cmd",
                     "pattern read presensi/v1/+/%u/cmd/set/gallery", "pattern read presensi/v1/+/%u/cmd/set/schedule"]
    assert not any(line.endswith(("#", "/+")) for line in reads), "no wildcard that would cover cmd/result"
    assert [w.rsplit("%u/", 1)[1] for w in writes] == list(DEVICE_WRITES)
    assert not set(DEVICE_WRITES) & set(DEVICE_READS)
    assert not any(w.split("%u/", 1)[1].startswith("cmd") and w != "pattern write presensi/v1/+/%u/cmd/result"
                   for w in writes), "a device writes no command topic, only its results"
    assert acl[-2:] == ["user central", "topic readwrite presensi/v1/#"]


def test_the_version_is_checked_against_the_applied_version_of_the_command_s_channel() -> None:
    gallery = build_command("install_gallery", key=CENTRAL, target=Target("bkpsdm", "kiosk-1"), version=5, now=NOW,
                            gallery_version=3, sha256="0" * 64, gallery_b64="")
    removal = build_command("remove_people", key=CENTRAL, target=Target("bkpsdm", "kiosk-1"), version=7, now=NOW,
                            nips=["198001012005011001"])

    def check(command: dict[str, object], applied: int | dict[str, int]) -> str | None:
        try:
            check_command(command, KEYS, device="kiosk-1", office="bkpsdm", applied=applied, now=NOW)
        except CommandRefused as exc:
            return exc.reason
        return None

    assert check(gallery, {"gallery": 4, "schedule": 6}) is None, "a newer schedule does not block the gallery"
    assert check(gallery, {"schedule": 6}) is None, "a channel with nothing applied is at 0"
    assert check(gallery, {"gallery": 5, "schedule": 1}) == "replay"
    assert check(removal, {"gallery": 8, "schedule": 1}) == "older_version"
    assert check(gallery, 4) is None and check(gallery, 5) == "replay", "or the channel's version itself"
    with pytest.raises(CommandRefused, match="already applied on the gallery channel"):
        check_command(gallery, KEYS, device="kiosk-1", office="bkpsdm", applied={"gallery": 5}, now=NOW)
