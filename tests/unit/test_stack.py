"""scripts/stack.py without Docker: the .env it writes, and its refusals."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scripts import stack
from scripts.stack import SECRETS, Stack, amqp_login, parse_env_file


@pytest.fixture
def no_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "docker_ok", lambda *args: False)
    for key in SECRETS:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.usefixtures("no_volumes")
def test_first_run_writes_env_with_fresh_passwords(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    Stack(env_file).ensure_env_file()
    written = parse_env_file(env_file)
    example = parse_env_file(stack.ROOT / ".env.example")
    assert set(written) == set(example)
    passwords = [written[key] for key in SECRETS]
    assert all(len(p) >= 24 for p in passwords) and len(set(passwords)) == len(SECRETS)
    assert {k: v for k, v in written.items() if k not in SECRETS} == \
        {k: v for k, v in example.items() if k not in SECRETS}


@pytest.mark.usefixtures("no_volumes")
def test_an_existing_env_is_kept(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    Stack(env_file).ensure_env_file()
    before = env_file.read_text()
    Stack(env_file).ensure_env_file()
    assert env_file.read_text() == before


def test_refuses_new_passwords_for_old_volumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(stack, "docker_ok", lambda *args: args[:2] == ("volume", "inspect"))
    env_file = tmp_path / ".env"
    with pytest.raises(SystemExit):
        Stack(env_file).ensure_env_file()
    assert not env_file.exists()
    assert "make clean" in capsys.readouterr().err


@pytest.mark.usefixtures("no_volumes")
def test_env_without_a_password_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_PASSWORD=\nMYSQL_PASSWORD=x\nMYSQL_ROOT_PASSWORD=y\n")
    with pytest.raises(SystemExit):
        Stack(env_file).ensure_env_file()


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# comment\nA=1\n B = two \nC=\"quoted\"\nnot a setting\n")
    assert parse_env_file(path) == {"A": "1", "B": "two", "C": "quoted"}


def test_amqp_login_reports_an_unreachable_broker() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert amqp_login("127.0.0.1", port, "user", "pw") != ""
