"""Secrets given as CLI flags show in ``ps``: the CLI warns and reads them from env or files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli import _settings, build_parser
from hub.settings import holds_secret


def _parse(*flags: str) -> object:
    return build_parser().parse_args(["check-profiles", *flags])


@pytest.mark.parametrize("flag, value", [
    ("--influx-password", "hunter2"), ("--influx-token", "tok"), ("--api-tokens", "a:viewer:t"),
    ("--webhook-secret", "s"), ("--grafana-token", "g"),
    ("--mqtt-url", "mqtt://hub:pw@broker:1883"),
    ("--database-url", "postgresql+psycopg://hub:pw@db/hub")])
def test_a_secret_flag_warns(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    _settings(_parse(flag, value))  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert f"warning: {flag} puts a secret on the command line" in err
    assert "HUB_" + flag.removeprefix("--").replace("-", "_").upper() in err


def test_plain_flags_and_the_environment_do_not_warn(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_INFLUX_PASSWORD", "hunter2")
    settings = _settings(_parse("--mqtt-url", "mqtt://broker:1883",  # type: ignore[arg-type]
                                "--influx-db", "hub"))
    assert settings.influx_password == "hunter2"
    assert capsys.readouterr().err == ""
    assert not holds_secret("mqtt_url", "mqtt://hub@broker:1883")


def test_secrets_are_read_from_files_in_hub_secrets_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "HUB_INFLUX_TOKEN").write_text("from-a-file\n")
    monkeypatch.setenv("HUB_SECRETS_DIR", str(tmp_path))
    settings = _settings(_parse())  # type: ignore[arg-type]
    assert settings.influx_token == "from-a-file"
