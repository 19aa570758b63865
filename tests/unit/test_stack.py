"""scripts/stack.py without Docker: the .env it writes, and its refusals (an old Python too)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from common import topology
from scripts import stack
from scripts.stack import COOKIE, SECRETS, Stack, amqp_login, node_ports, parse_env_file


@pytest.fixture
def no_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "docker_ok", lambda *args: False)
    for key in (*SECRETS, COOKIE, "RABBITMQ_NODES"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.usefixtures("no_volumes")
def test_first_run_writes_env_with_fresh_passwords(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    Stack(env_file).ensure_env_file()
    written = parse_env_file(env_file)
    example = parse_env_file(stack.ROOT / ".env.example")
    assert set(written) == set(example)
    generated = (*SECRETS, COOKIE)
    passwords = [written[key] for key in generated]
    assert all(len(p) >= 24 for p in passwords) and len(set(passwords)) == len(generated)
    assert {k: v for k, v in written.items() if k not in generated} == \
        {k: v for k, v in example.items() if k not in generated}


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


@pytest.mark.usefixtures("no_volumes")
def test_a_cluster_gets_a_cookie_in_an_env_from_before_clusters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_PASSWORD=a\nMYSQL_PASSWORD=b\nMYSQL_ROOT_PASSWORD=c\n")
    Stack(env_file).ensure_env_file()
    assert COOKIE not in parse_env_file(env_file)  # one node needs none
    monkeypatch.setenv("RABBITMQ_NODES", "3")
    Stack(env_file).ensure_env_file()
    cookie = parse_env_file(env_file)[COOKIE]
    Stack(env_file).ensure_env_file()
    assert len(cookie) >= 24 and parse_env_file(env_file)[COOKIE] == cookie


def test_node_names_and_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_NODES", "3")
    monkeypatch.delenv("RABBITMQ_AMQP_PORTS", raising=False)
    monkeypatch.setenv("RABBITMQ_AMQP_PORT", "5672")
    system = Stack(tmp_path / "none.env")
    system.load()
    nodes = system.nodes()
    assert [(n.container, n.hostname, n.volume, n.port) for n in nodes] == [
        ("rabbitmq", "rabbitmq", "rabbitmq_data", 5672),
        ("rabbitmq-2", "rabbitmq-2", "rabbitmq_data_2", 5673),
        ("rabbitmq-3", "rabbitmq-3", "rabbitmq_data_3", 5674),
    ]
    assert nodes[2].name == "rabbit@rabbitmq-3"
    assert node_ports({"RABBITMQ_NODES": "2", "RABBITMQ_AMQP_PORTS": "7000,7100"}) == [7000, 7100]
    assert node_ports({}) == [5672]
    with pytest.raises(SystemExit):
        node_ports({"RABBITMQ_NODES": "3", "RABBITMQ_AMQP_PORTS": "7000,7100"})


def test_the_exchange_is_the_topology_s() -> None:
    assert stack.EXCHANGE == topology.EXCHANGE


def test_the_minimum_python_is_pyproject_s() -> None:
    pyproject = (Path(stack.ROOT) / "pyproject.toml").read_text(encoding="utf-8")
    major, minor = stack.MIN_PYTHON
    assert f'target-version = "py{major}{minor}"' in pyproject
    assert f'python_version = "{major}.{minor}"' in pyproject


def test_an_older_python_is_refused_with_a_clear_message() -> None:
    pretend = ("import runpy, sys; sys.version_info = (3, 10, 0, 'final', 0); "
               f"runpy.run_path({str(Path(stack.ROOT) / 'scripts' / 'stack.py')!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", pretend], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "needs Python 3.11 or newer" in result.stderr


def test_containers_are_listed_by_compose_labels_running_or_stopped() -> None:
    command = stack.containers_command("My.Project", "migrate")
    assert command[:3] == ["docker", "ps", "--all"]  # stopped ones too: v2's `ps -q` leaves them out
    filters = [command[i + 1] for i, arg in enumerate(command) if arg == "--filter"]
    assert filters == ["label=com.docker.compose.project=myproject",  # as compose normalizes it
                       "label=com.docker.compose.service=migrate",
                       "label=com.docker.compose.oneoff=False"]
    every = stack.containers_command("mstest")
    assert "label=com.docker.compose.service=migrate" not in every and "--all" in every


def test_project_containers_reads_ids_in_name_order(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = "mstest-producer-1\tbbb\nmstest-migrate-1\taaa\n"
    monkeypatch.setattr(stack, "run", lambda args, **kw: subprocess.CompletedProcess(args, 0, listed, ""))
    assert stack.project_containers("mstest") == ["aaa", "bbb"]
    assert stack.service_container("mstest", "migrate") == "aaa"


@pytest.mark.parametrize(("choice", "v2", "v1", "expected"), [
    ("auto", True, True, ["docker", "compose"]),
    ("auto", False, True, ["docker-compose"]),
    ("v1", True, True, ["docker-compose"]),
    ("v2", True, True, ["docker", "compose"]),
])
def test_compose_cli_choice(monkeypatch: pytest.MonkeyPatch, choice: str, v2: bool, v1: bool,
                            expected: list[str]) -> None:
    stack.compose_command.cache_clear()
    monkeypatch.setattr(stack, "docker_ok", lambda *args: v2 and args == ("compose", "version"))
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/docker-compose" if v1 else None)
    try:
        assert stack.compose_command(choice) == expected
    finally:
        stack.compose_command.cache_clear()


@pytest.mark.parametrize(("choice", "message"), [
    ("v2", "`docker compose` (Compose v2) is not installed"),
    ("v3", "COMPOSE_CLI=v3: say v2 (docker compose), v1 (docker-compose) or auto"),
])
def test_compose_cli_that_cannot_be_had_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, choice: str,
                                                         message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    stack.compose_command.cache_clear()
    monkeypatch.setattr(stack, "docker_ok", lambda *args: False)
    try:
        with pytest.raises(SystemExit):
            stack.compose_command(choice)
    finally:
        stack.compose_command.cache_clear()
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("no_volumes")
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_env_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    Stack(env_file).ensure_env_file()
    assert env_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.usefixtures("no_volumes")
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_a_world_readable_env_file_is_narrowed(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    Stack(env_file).ensure_env_file()
    env_file.chmod(0o644)
    Stack(env_file).ensure_env_file()
    assert env_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("bind", "token", "refused"), [
    ("127.0.0.1", "", False), ("localhost", "", False), ("::1", "", False),
    ("0.0.0.0", "", True), ("198.51.100.5", "", True), ("0.0.0.0", "s3cret", False),  # noqa: S104
])
def test_the_api_is_not_published_beyond_loopback_without_a_token(bind: str, token: str,
                                                                  refused: bool) -> None:
    problem = stack.open_producer_problem({"PRODUCER_BIND": bind, "API_TOKEN": token})
    assert bool(problem) == refused
    if refused:
        assert f"PRODUCER_BIND={bind}" in problem and "API_TOKEN" in problem


def test_make_up_refuses_an_open_api_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_PASSWORD=a\nMYSQL_PASSWORD=b\nMYSQL_ROOT_PASSWORD=c\nPRODUCER_BIND=0.0.0.0\n")
    monkeypatch.setattr(stack, "compose_command", lambda choice=None: ["docker", "compose"])
    monkeypatch.setattr(stack, "compose_version", lambda command: "Compose 2")
    monkeypatch.delenv("PRODUCER_BIND", raising=False)
    monkeypatch.delenv("API_TOKEN", raising=False)
    started: list[Stack] = []

    def resolve_images(self: Stack) -> dict[str, str]:
        started.append(self)
        return {}

    monkeypatch.setattr(Stack, "resolve_images", resolve_images)
    with pytest.raises(SystemExit):
        Stack(env_file).up()
    assert started == []
    assert "PRODUCER_BIND=0.0.0.0" in capsys.readouterr().err


@pytest.mark.usefixtures("no_volumes")
def test_an_env_from_before_service_accounts_gets_their_passwords(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for key in stack.SERVICE_SECRETS:
        monkeypatch.delenv(key, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_PASSWORD=a\nMYSQL_PASSWORD=b\nMYSQL_ROOT_PASSWORD=c\n")
    Stack(env_file).ensure_env_file()
    written = parse_env_file(env_file)
    generated = {key for key in stack.SERVICE_SECRETS if len(written.get(key, "")) >= 24}
    assert generated == set(stack.SERVICE_SECRETS)
    assert written["MYSQL_ROOT_PASSWORD"] == "c"  # noqa: S105 (the others stay as they were)


@pytest.mark.parametrize(("setting", "desktop", "expected"), [
    ("auto", False, ["127.0.0.1", "203.0.113.1"]),  # a Linux engine: loopback and the gateway, not the LAN
    ("auto", True, ["0.0.0.0"]),  # noqa: S104 (Docker Desktop's VM has neither address on the host)
    ("198.51.100.5", False, ["198.51.100.5"]),  # what the user set
])
def test_amqp_is_published_where_the_services_need_it_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, desktop: bool,
        expected: list[str]) -> None:
    monkeypatch.setattr(stack, "docker_desktop", lambda: desktop)
    monkeypatch.setattr(Stack, "gateway_ip", lambda self: "203.0.113.1")
    settings = Stack(tmp_path / ".env")
    settings.values = {**settings.defaults, "RABBITMQ_AMQP_BIND": setting}
    assert settings.amqp_binds() == expected
    command = settings.rabbitmq_run_command("rabbitmq:4.1-management", settings.nodes()[0])
    published = [command[i + 1] for i, arg in enumerate(command) if arg == "--publish"]
    assert [p for p in published if p.endswith(":5672")] == [f"{bind}:5672:5672" for bind in expected]
    assert {"--memory", "--pids-limit", "--security-opt"} <= set(command)


@pytest.mark.parametrize(("setting", "expected"), [("", "1000"), ("250", "250")])
def test_a_cluster_node_polls_its_failure_detector_as_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, expected: str) -> None:
    """Quorum queues elect a new leader when aten says the old one's node is down, at its poll:
    RabbitMQ polls every 5 s, the cluster every RABBITMQ_NODE_DOWN_POLL_MS (docs/cluster.md)."""
    monkeypatch.setattr(Stack, "gateway_ip", lambda self: "203.0.113.1")
    settings = Stack(tmp_path / ".env")
    settings.values = {**settings.defaults, "RABBITMQ_NODES": "3", "RABBITMQ_NODE_DOWN_POLL_MS": setting}
    clustered = settings.rabbitmq_run_command("rabbitmq:4.1-management", settings.nodes()[1], clustered=True)
    assert f"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-aten poll_interval {expected}" in clustered
    alone = settings.rabbitmq_run_command("rabbitmq:4.1-management", settings.nodes()[0])
    assert not [arg for arg in alone if "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS" in arg]


def test_a_failure_detector_poll_that_is_no_number_is_refused(tmp_path: Path) -> None:
    settings = Stack(tmp_path / ".env")
    settings.values = {**settings.defaults, "RABBITMQ_NODES": "3", "RABBITMQ_NODE_DOWN_POLL_MS": "1s"}
    with pytest.raises(SystemExit):
        settings.rabbitmq_run_command("rabbitmq:4.1-management", settings.nodes()[1], clustered=True)


def test_a_measurement_s_own_setting_goes_in_before_the_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Stack, "gateway_ip", lambda self: "203.0.113.1")
    settings = Stack(tmp_path / ".env")
    settings.values = {**settings.defaults}
    setting = "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+sbwt none"
    command = settings.rabbitmq_run_command("rabbitmq:4.1-management", settings.nodes()[0],
                                            extra_env=(setting,))
    assert command[-3:] == ["--env", setting, "rabbitmq:4.1-management"]
