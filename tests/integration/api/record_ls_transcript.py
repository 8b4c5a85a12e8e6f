"""Record how a real Label Studio answers a fixed sequence of webhooks API requests, for
test_api_ls_compat.py to replay against outbox's API. Not a test; run by hand against LS:

    python tests/integration/api/record_ls_transcript.py http://127.0.0.1:8081 <token>

Project and webhook ids are written as ``{project}`` and ``{webhook}``; volatile values (ids of
error bodies, timestamps) are kept, the test compares shapes and stable values only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

OUT = Path(__file__).parent / "data" / "ls-1.23.2-webhooks-api.json"
URL = "http://127.0.0.1:9099/hook"

# (name, method, path, body); a body of None sends no body
STEPS: list[tuple[str, str, str, Any]] = [
    ("create", "POST", "/api/webhooks/", {"project": "{project}", "url": URL}),
    (
        "create_full",
        "POST",
        "/api/webhooks/",
        {
            "project": "{project}",
            "url": URL + "2",
            "send_payload": False,
            "send_for_all_actions": False,
            "headers": {"X-Token": "abc"},
            "is_active": False,
            "actions": ["TASKS_CREATED", "ANNOTATION_CREATED"],
        },
    ),
    ("list", "GET", "/api/webhooks/", None),
    ("list_project", "GET", "/api/webhooks/?project={project}", None),
    ("list_org_level", "GET", "/api/webhooks/?project=null", None),
    ("list_bad_project", "GET", "/api/webhooks/?project=abc", None),
    ("get", "GET", "/api/webhooks/{webhook}/", None),
    ("get_missing", "GET", "/api/webhooks/999999/", None),
    ("missing_url", "POST", "/api/webhooks/", {"project": "{project}"}),
    ("invalid_url", "POST", "/api/webhooks/", {"project": "{project}", "url": "not a url"}),
    ("blank_url", "POST", "/api/webhooks/", {"project": "{project}", "url": ""}),
    ("unknown_action", "POST", "/api/webhooks/", {"project": "{project}", "url": URL, "actions": ["NOPE"]}),
    (
        "actions_not_list",
        "POST",
        "/api/webhooks/",
        {"project": "{project}", "url": URL, "actions": "TASKS_CREATED"},
    ),
    (
        "org_only_action",
        "POST",
        "/api/webhooks/",
        {"project": "{project}", "url": URL, "actions": ["PROJECT_CREATED"]},
    ),
    ("headers_not_object", "POST", "/api/webhooks/", {"project": "{project}", "url": URL, "headers": []}),
    (
        "header_not_string",
        "POST",
        "/api/webhooks/",
        {"project": "{project}", "url": URL, "headers": {"a": 1}},
    ),
    (
        "too_many_headers",
        "POST",
        "/api/webhooks/",
        {"project": "{project}", "url": URL, "headers": {f"h{i}": "v" for i in range(11)}},
    ),
    ("bad_boolean", "POST", "/api/webhooks/", {"project": "{project}", "url": URL, "send_payload": "maybe"}),
    ("null_boolean", "POST", "/api/webhooks/", {"project": "{project}", "url": URL, "is_active": None}),
    ("unknown_project", "POST", "/api/webhooks/", {"project": 999999, "url": URL}),
    ("project_not_int", "POST", "/api/webhooks/", {"project": "abc", "url": URL}),
    ("body_is_list", "POST", "/api/webhooks/", [1, 2]),
    (
        "read_only_fields_ignored",
        "POST",
        "/api/webhooks/",
        {"project": "{project}", "url": URL + "3", "id": 5000, "created_at": "2020-01-01T00:00:00Z"},
    ),
    (
        "patch_actions",
        "PATCH",
        "/api/webhooks/{webhook}/",
        {"actions": ["TASKS_CREATED"], "send_for_all_actions": False},
    ),
    ("patch_url_only", "PATCH", "/api/webhooks/{webhook}/", {"url": URL + "/patched"}),
    ("patch_project_ignored", "PATCH", "/api/webhooks/{webhook}/", {"project": 999999}),
    ("patch_invalid_url", "PATCH", "/api/webhooks/{webhook}/", {"url": "bad"}),
    ("put_without_url", "PUT", "/api/webhooks/{webhook}/", {"send_payload": False}),
    ("put", "PUT", "/api/webhooks/{webhook}/", {"url": URL + "/put", "send_payload": False}),
    ("delete", "DELETE", "/api/webhooks/{webhook}/", None),
    ("delete_again", "DELETE", "/api/webhooks/{webhook}/", None),
    ("info", "GET", "/api/webhooks/info/", None),
    ("info_org_only", "GET", "/api/webhooks/info/?organization-only=true", None),
    ("info_not_org_only", "GET", "/api/webhooks/info/?organization-only=false", None),
]


def substitute(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        for name, ident in ids.items():
            if value == "{" + name + "}":
                return ident
            value = value.replace("{" + name + "}", str(ident))
        return value
    if isinstance(value, dict):
        return {k: substitute(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, ids) for v in value]
    return value


def main(base: str, token: str) -> None:
    client = httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30)
    project = client.post("/api/projects/", json={"title": "outbox transcript"}).json()["id"]
    ids = {"project": project}
    transcript = []
    try:
        for name, method, path, body in STEPS:
            response = client.request(method, substitute(path, ids), json=substitute(body, ids))
            data = response.json() if response.content else None
            if name == "create":
                ids["webhook"] = data["id"]
            transcript.append(
                {
                    "name": name,
                    "method": method,
                    "path": path,
                    "body": body,
                    "status": response.status_code,
                    "response": data,
                }
            )
        unauthenticated = httpx.get(base + "/api/webhooks/")
        transcript.append(
            {
                "name": "no_token",
                "method": "GET",
                "path": "/api/webhooks/",
                "body": None,
                "status": unauthenticated.status_code,
                "response": unauthenticated.json(),
            }
        )
        wrong = httpx.get(base + "/api/webhooks/", headers={"Authorization": "Token wrong"})
        transcript.append(
            {
                "name": "wrong_token",
                "method": "GET",
                "path": "/api/webhooks/",
                "body": None,
                "status": wrong.status_code,
                "response": wrong.json(),
            }
        )
    finally:
        for webhook in client.get("/api/webhooks/", params={"project": project}).json():
            client.delete(f"/api/webhooks/{webhook['id']}/")
        client.delete(f"/api/projects/{project}/")
    OUT.write_text(json.dumps(transcript, indent=1) + "\n")
    print(f"{len(transcript)} exchanges written to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
