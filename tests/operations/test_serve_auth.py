"""Who may call what: the API key on the data endpoints, the admin token, and deny-by-default routes."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from loopml.operations import create_app
from loopml.operations._auth import PROTECTIONS, PUBLIC_PATHS, unguarded_routes

KEY, TOKEN = "k3y-for-tests", "t0ken-for-tests"


@pytest.fixture(scope="module")
def guarded_url(served, run_app):
    with run_app(create_app(served.store, served.project, api_key=KEY, admin_token=TOKEN)) as url:
        yield url


@pytest.fixture
def good_row(served) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in served.holdout.iloc[0].to_dict().items()}


def _protection(route) -> set:
    return {d.call for d in route.dependant.dependencies} & set(PROTECTIONS) if isinstance(route, APIRoute) else set()


def test_every_route_is_public_or_protected(served, guarded_url):
    app = create_app(served.store, served.project)
    assert unguarded_routes(app) == []
    for route in app.routes:
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        if route.path in PUBLIC_PATHS:
            assert not _protection(route), f"{route.path} is public and protected"
            # A public route answers without credentials (a GET for the docs' redirect page as well).
            r = httpx.request(methods[0], guarded_url + route.path)
            assert r.status_code not in (401, 403), route.path
        else:
            assert _protection(route), f"{route.path} is neither public nor protected"
            for method in methods:
                r = httpx.request(method, guarded_url + route.path, json={})
                assert r.status_code == 401, (method, route.path, r.text)


def test_a_new_route_without_protection_is_reported(served):
    app = create_app(served.store, served.project)
    app.add_api_route("/debug", lambda: {"secret": 1})
    assert unguarded_routes(app) == ["/debug"]


def test_predict_without_a_key_is_401_saying_what_to_send(guarded_url, good_row):
    r = httpx.post(f"{guarded_url}/predict", json={"row": good_row})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"] == ("no API key sent; send the header 'Authorization: Bearer <key>' or "
                                  "'X-API-Key: <key>'")


@pytest.mark.parametrize("headers", [{"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                                     {"X-API-Key": KEY + "x"}, {"X-API-Key": "\u00e9t\u00e9".encode()}])
def test_a_wrong_key_is_401(guarded_url, good_row, headers):
    r = httpx.post(f"{guarded_url}/predict", json={"row": good_row}, headers=headers)
    assert r.status_code == 401
    assert r.json()["detail"].startswith("the API key is not valid; send the key set in LOOPML_API_KEY")


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}])
def test_the_key_opens_predict_and_feedback(guarded_url, good_row, headers):
    r = httpx.post(f"{guarded_url}/predict", json={"row": good_row}, headers=headers)
    assert r.status_code == 200, r.text
    prediction_id = r.json()["predictions"][0]["id"]
    assert httpx.post(f"{guarded_url}/feedback", json={"prediction_id": prediction_id, "label": "no"}).status_code \
        == 401
    r = httpx.post(f"{guarded_url}/feedback", json={"prediction_id": prediction_id, "label": "no"}, headers=headers)
    assert r.status_code == 200, r.text


def test_the_key_comes_from_the_environment(served, run_app, good_row, monkeypatch):
    monkeypatch.setenv("LOOPML_API_KEY", "from-env")
    with run_app(create_app(served.store, served.project)) as url:
        assert httpx.post(f"{url}/predict", json={"row": good_row}).status_code == 401
        assert httpx.post(f"{url}/predict", json={"row": good_row}, headers={"X-API-Key": "from-env"}).status_code \
            == 200


def test_admin_endpoints_are_disabled_without_a_token(client):
    r = client.post("/admin/reload", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403
    assert r.json()["detail"] == "admin endpoints are disabled: set LOOPML_ADMIN_TOKEN"


@pytest.mark.parametrize(("headers", "detail"), [
    ({}, "no admin token; send the token set in LOOPML_ADMIN_TOKEN as 'Authorization: Bearer <token>'"),
    ({"Authorization": f"Bearer {KEY}"}, "wrong admin token; send the token set in LOOPML_ADMIN_TOKEN"),
    ({"X-Admin-Token": "nope"}, "wrong admin token"),
])
def test_admin_needs_the_admin_token(guarded_url, headers, detail):
    r = httpx.post(f"{guarded_url}/admin/reload", headers=headers)
    assert r.status_code == 401
    assert r.json()["detail"].startswith(detail)


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {TOKEN}"}, {"X-Admin-Token": TOKEN}])
def test_admin_reload_with_the_token(guarded_url, served, headers):
    r = httpx.post(f"{guarded_url}/admin/reload", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_version": served.version.version, "swapped": False}
