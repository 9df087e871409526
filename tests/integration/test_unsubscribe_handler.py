"""The Unsubscribe function on moto, driven by the events/ samples, tables from template.yaml."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.suppression.store import DynamoSuppressionStore
from optout.unsubscribe.token import issue
from optout_local.provision import Stack
from optout_local.runtime import LambdaContext, load_handler
from tests.conftest import sample_event

ALICE = "alice@example.com"


@pytest.fixture
def handler(aws: Stack) -> Any:
    return load_handler(aws.function("unsubscribe"))


@pytest.fixture
def store(aws: Stack) -> DynamoSuppressionStore:
    return DynamoSuppressionStore(get_settings().suppression_table)


def identity(address: str = ALICE) -> Identity:
    return Identity.of(wiring.pepper(), "email", address)


def token_for(topic: str = "product", address: str = ALICE, **kwargs: Any) -> str:
    return issue(wiring.key_ring(), "email", identity(address).key, topic, **kwargs)


def call(handler: Any, ctx: LambdaContext, name: str, token: str, **overrides: Any) -> dict[str, Any]:
    response: dict[str, Any] = handler(sample_event(name, token, **overrides), ctx)
    return response


def form(body: str, content_type: str = "application/x-www-form-urlencoded") -> dict[str, Any]:
    return {"body": body, "isBase64Encoded": False, "headers": {"host": "x", "content-type": content_type}}


def test_get_renders_the_preference_page_and_changes_nothing(handler, lambda_context, store) -> None:
    # Given a link for alice's product mail
    token = token_for()
    # When a scanner or a person opens it
    response = call(handler, lambda_context, "unsubscribe_get", token)
    # Then the page lists optional topics as subscribed, the required ones as always delivered
    assert response["statusCode"] == 200
    page = response["body"]
    assert 'name="subscribed" value="product"' in page and 'value="marketing"' in page
    assert "Unsubscribe from Product updates" in page
    assert "Privacy policy changes" in page and "Security alerts" in page
    assert ALICE not in page and "alice" not in page
    # And nothing was written
    assert store.get(identity().key) is None
    assert store.history(identity().key) == []


def test_head_returns_headers_only_and_changes_nothing(handler, lambda_context, store) -> None:
    response = call(handler, lambda_context, "unsubscribe_head", token_for())
    assert response["statusCode"] == 200
    assert response["body"] == ""
    assert response["headers"]["Content-Type"].startswith("text/html")
    assert store.get(identity().key) is None


@pytest.mark.parametrize("sample", ["unsubscribe_one_click", "unsubscribe_one_click_multipart"])
def test_one_click_opts_out_of_the_token_topic_once(handler, lambda_context, store, sample) -> None:
    token = token_for("product")
    first = call(handler, lambda_context, sample, token)
    assert first["statusCode"] == 200
    assert "Location" not in first["headers"]
    state = store.get(identity().key)
    assert state is not None and state.topics == {"product"} and not state.all_optional
    history = store.history(identity().key)
    assert [(e.action, e.scope, e.source) for e in history] == [("opt_out", "product", "one_click")]

    # Posting again is harmless: same answer, nothing more written
    again = call(handler, lambda_context, sample, token)
    assert again["statusCode"] == 200
    assert store.get(identity().key) == state
    assert len(store.history(identity().key)) == 1


def test_form_save_applies_the_checked_topics(handler, lambda_context, store) -> None:
    # Given alice unsubscribed from everything optional
    response = call(handler, lambda_context, "unsubscribe_one_click", token_for(), **form("action=unsubscribe_all"))
    assert response["statusCode"] == 200
    assert store.get(identity().key).all_optional  # type: ignore[union-attr]
    # When she re-subscribes to marketing only, via the page's form
    response = call(handler, lambda_context, "unsubscribe_form_save", token_for())
    # Then product stays off and marketing is back on
    assert response["statusCode"] == 200
    assert "your preferences are saved" in response["body"]
    state = store.get(identity().key)
    assert state is not None and not state.all_optional and state.topics == {"product"}
    actions = [(e.action, e.scope, e.source) for e in store.history(identity().key)]
    assert ("opt_out", "optional", "preference_page") in actions
    assert ("opt_in", "marketing", "preference_page") in actions


def test_form_can_unsubscribe_several_topics_and_shows_the_result(handler, lambda_context, store) -> None:
    response = call(handler, lambda_context, "unsubscribe_form_save", token_for(), **form("action=save"))
    assert response["statusCode"] == 200
    assert store.get(identity().key).topics == {"marketing", "product"}  # type: ignore[union-attr]
    assert response["body"].count("(unsubscribed)") == 2


def test_page_is_localised_by_accept_language(handler, lambda_context) -> None:
    event = sample_event("unsubscribe_get", token_for())
    event["headers"]["accept-language"] = "es-ES,es;q=0.9,en;q=0.5"
    response = handler(event, lambda_context)
    assert '<html lang="es">' in response["body"]
    assert "Darse de baja" in response["body"]
    assert response["headers"]["Content-Language"] == "es"


@pytest.mark.parametrize(
    ("mangle", "status"),
    [
        (lambda t: t[:-5], 400),  # a truncated signature has the wrong length
        (lambda t: t[: len(t) // 2], 400),
        (lambda t: t.replace(".product.", ".marketing."), 403),
        (lambda t: "garbage", 400),
        (lambda t: "", 400),
    ],
    ids=["short-mac", "half", "tampered-topic", "garbage", "empty"],
)
def test_bad_tokens_get_a_4xx_page_that_reveals_nothing(handler, lambda_context, store, mangle, status) -> None:
    token = mangle(token_for())
    for sample in ("unsubscribe_get", "unsubscribe_one_click"):
        response = call(handler, lambda_context, sample, token)
        assert response["statusCode"] == status
        assert response["headers"]["Content-Type"].startswith("text/html")
        assert "alice" not in response["body"] and identity().key not in response["body"]
    assert store.get(identity().key) is None


def test_expired_and_forged_tokens_are_refused(handler, lambda_context) -> None:
    expired = token_for(now=datetime.now(UTC) - timedelta(days=get_settings().token_ttl_days + 1))
    assert call(handler, lambda_context, "unsubscribe_get", expired)["statusCode"] == 403
    from optout.unsubscribe.token import KeyRing

    forged_ring = KeyRing(active="k1", keys={"k1": b"x" * 64})
    forged = issue(forged_ring, "email", identity().key, "product")
    assert call(handler, lambda_context, "unsubscribe_one_click", forged)["statusCode"] == 403


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        (form("List-Unsubscribe=One-Click", "application/json"), 415),
        (form("List-Unsubscribe=One-Click", "text/plain"), 415),
        (form("x=" + "a" * 20000), 413),
        (form("action=save&subscribed=weather"), 422),
        (form("action=save&subscribed=security"), 422),
        (form("action=explode"), 400),
        (form(""), 400),
        ({"body": "not base64!", "isBase64Encoded": True}, 400),
    ],
    ids=["json", "text", "oversized", "unknown-topic", "required-topic", "unknown-action", "empty", "bad-base64"],
)
def test_bad_posts_get_a_fitting_4xx(handler, lambda_context, store, overrides, status) -> None:
    response = call(handler, lambda_context, "unsubscribe_one_click", token_for(), **overrides)
    assert response["statusCode"] == status
    assert store.get(identity().key) is None


def test_one_click_on_a_required_topic_link_is_refused(handler, lambda_context, store) -> None:
    response = call(handler, lambda_context, "unsubscribe_one_click", token_for("policy"))
    assert response["statusCode"] == 422
    assert store.get(identity().key) is None
    page = call(handler, lambda_context, "unsubscribe_get", token_for("policy"))
    assert page["statusCode"] == 200
    assert 'id="unsubscribe-topic"' not in page["body"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
def test_wrong_methods_get_405_with_allow(handler, lambda_context, method) -> None:
    event = sample_event("unsubscribe_get", token_for())
    event["requestContext"]["http"]["method"] = method
    response = handler(event, lambda_context)
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "GET, HEAD, POST"


def test_pages_carry_strict_security_headers(handler, lambda_context) -> None:
    headers = call(handler, lambda_context, "unsubscribe_get", token_for())["headers"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.text(max_size=300),
    body=st.binary(max_size=600),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=b",
            "multipart/form-data",
            "text/plain",
            "",
        ]
    ),
    b64=st.booleans(),
)
def test_arbitrary_tokens_and_bodies_never_get_a_5xx(handler, lambda_context, token, body, content_type, b64) -> None:
    event = sample_event("unsubscribe_one_click", token)
    event["headers"]["content-type"] = content_type
    event["isBase64Encoded"] = b64
    event["body"] = base64.b64encode(body).decode() if b64 else body.decode("latin-1")
    assert handler(event, lambda_context)["statusCode"] < 500
    get = sample_event("unsubscribe_get", token)
    assert handler(get, lambda_context)["statusCode"] < 500


def test_an_in_process_invocation_is_traced_as_deployed(handler, lambda_context, xray_daemon) -> None:
    # Given tracing on (Tracing: Active) and this test's sampled trace header
    root = os.environ["_X_AMZN_TRACE_ID"].split(";")[0].removeprefix("Root=")
    # When the handler runs
    assert handler(sample_event("unsubscribe_get"), lambda_context)["statusCode"] == 403
    # Then the X-Ray SDK sent its handler segment and one subsegment per AWS call, with no payload
    deadline = time.monotonic() + 5
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not any(s.get("name") == "## lambda_handler" for s in mine):
        time.sleep(0.05)
        mine = [s for s in xray_daemon.segments if s.get("trace_id") == root]
    names = [s.get("name") for s in mine]
    assert "## lambda_handler" in names and "secretsmanager" in names, names
    assert not any("lambda_handler response" in str(s.get("metadata")) for s in mine)
