from tests.integration.console.conftest import Browser


def test_pages_render(logged_in: Browser):
    c = logged_in.client
    for path in ("/", "/webhooks/new", "/deliveries", "/pipeline"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.text[:3000])
    r = logged_in.post("/webhooks/new", {"url": "http://127.0.0.1:9/hook", "project": "1", "send_payload": "on", "send_for_all_actions": "all", "max_concurrency": "8"}, csrf_from="/webhooks/new")
    assert r.status_code == 303, r.text
    for path in ("/webhooks/1", "/webhooks/1/edit", "/webhooks/1/delete"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.text[:3000])
    r = logged_in.post("/webhooks/1/test", csrf_from="/webhooks/1")
    assert r.status_code == 303, r.text
    r = c.get(r.headers["location"])
    assert r.status_code == 200, r.text[:3000]
