"""Label Studio's own Python SDK (label-studio-sdk) managing webhooks through outbox's API, unchanged.
Run by test_api_ls_sdk.py with a Python that has the SDK: ``python ls_sdk_client.py URL TOKEN``;
prints one JSON line of what it saw."""

import json
import sys

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

base, token = sys.argv[1], sys.argv[2]
ls = LabelStudio(base_url=base, api_key=token)
seen = {"info": sorted(ls.webhooks.info().dict())}
created = ls.webhooks.create(
    url="http://127.0.0.1:9/hook", project=1, actions=["TASKS_CREATED"], send_for_all_actions=False,
    headers={"X-Token": "t"},
)  # fmt: skip
seen["created"] = {
    "project": created.project,
    "actions": created.actions,
    "organization": created.organization,
}
seen["listed"] = [w.id for w in ls.webhooks.list(project="1")]
seen["got_headers"] = ls.webhooks.get(created.id).headers
updated = ls.webhooks.update(created.id, url="http://127.0.0.1:9/other", is_active=False)
seen["updated"] = {"url": updated.url, "is_active": updated.is_active, "actions": updated.actions}
ls.webhooks.delete(created.id)
try:
    ls.webhooks.get(created.id)
except ApiError as error:
    seen["after_delete"] = error.status_code
try:
    ls.webhooks.create(url="not a url", project=1)
except ApiError as error:
    seen["bad_url"] = [error.status_code, sorted(error.body["validation_errors"])]
print(json.dumps(seen))
