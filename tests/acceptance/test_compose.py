"""docker-compose.yml, checked without a Docker engine: each outbox service runs a command the CLI
has and sets only variables outbox reads; Label Studio and outbox point at the same PostgreSQL;
outbox's port is not Label Studio's; the receiver's variables are the ones the example reads, its
secret is valid, and the first-webhook recipe in the file's comments is a real command."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from outbox.admin import validation
from outbox.cli import command
from tests.support.cli import outbox
from tests.support.configuration import ROOT, environ_reads, outbox_variables

TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("build") == "."}


def resolved(value: Any) -> str:
    """A value as compose would pass it with no .env file: ``${NAME:-default}`` becomes default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def environment(name: str) -> dict[str, str]:
    return {k: resolved(v) for k, v in (SERVICES[name].get("environment") or {}).items()}


def words(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd if isinstance(cmd, list) else shlex.split(cmd)


def test_the_services():
    assert {"postgres", "label-studio", "outbox", "receiver"} <= set(SERVICES)
    assert words(SERVICES["outbox"]) == ["outbox", "up"]


@pytest.mark.parametrize("name", sorted(OURS))
def test_outbox_services_run_a_real_command_and_set_only_variables_outbox_reads(name):
    argv = words(OURS[name])
    assert argv[0] == "outbox"
    result = outbox(*argv[1:], "--help")
    assert result.returncode == 0, result.stderr
    unknown = set(environment(name)) - outbox_variables()
    assert not unknown, f"{name} sets {sorted(unknown)}, which outbox does not read"


def test_label_studio_and_outbox_use_the_same_database():
    db = environment("postgres")
    ls = environment("label-studio")
    assert ls["DJANGO_DB"] == "default"
    assert (ls["POSTGRE_HOST"], ls["POSTGRE_PORT"]) == ("postgres", "5432")
    assert (ls["POSTGRE_NAME"], ls["POSTGRE_USER"], ls["POSTGRE_PASSWORD"]) == (
        db["POSTGRES_DB"],
        db["POSTGRES_USER"],
        db["POSTGRES_PASSWORD"],
    )
    for name in OURS:
        url = conninfo_to_dict(environment(name)["DATABASE_URL"])
        assert (url["host"], url["dbname"], url["user"], url["password"]) == (
            "postgres",
            db["POSTGRES_DB"],
            db["POSTGRES_USER"],
            db["POSTGRES_PASSWORD"],
        ), name


def test_outbox_listens_on_its_own_port():
    env = environment("outbox")
    published = {p.split(":")[0] for p in SERVICES["outbox"]["ports"]}
    assert published == {env["OUTBOX_API_PORT"]}
    assert "8080" not in published
    assert {p.split(":")[0] for p in SERVICES["label-studio"]["ports"]} == {"8080"}
    assert env["OUTBOX_API_HOST"] == "0.0.0.0"  # reachable from the host through the published port


def test_the_receiver_runs_the_example_with_the_variables_it_reads():
    receiver = SERVICES["receiver"]
    source, target = receiver["volumes"][0].split(":")[:2]
    folder = ROOT / source
    assert folder.is_dir() and target == receiver["working_dir"]
    script = shlex.split(words(receiver)[-1])
    assert script[-2:] == ["python", "receiver.py"] and (folder / "receiver.py").exists()
    assert (folder / "requirements.txt").exists()
    env = environment("receiver")
    assert set(env) <= environ_reads(source)
    assert validation.secret_problem(env["RECEIVER_SECRET"]) is None


def test_the_first_webhook_recipe_is_a_real_command_with_the_receivers_secret():
    comments = "\n".join(line.lstrip("# ") for line in TEXT.splitlines() if line.startswith("#"))
    recipe = re.search(r"docker compose exec outbox (outbox webhooks add .*?)\n\n", comments, re.DOTALL)
    assert recipe
    argv = shlex.split(recipe.group(1).replace("\\\n", " "))
    add = command().commands["webhooks"].commands["add"]
    known = {opt for p in add.params for opt in (*p.opts, *p.secondary_opts)}
    assert {a for a in argv if a.startswith("-")} <= known
    secret = argv[argv.index("--secret") + 1]
    assert secret == environment("receiver")["RECEIVER_SECRET"]
    url = argv[3]
    assert url == f"http://receiver:{environment('receiver')['RECEIVER_PORT']}/"
