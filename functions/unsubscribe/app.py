"""Unsubscribe: GET/HEAD /unsubscribe shows the preference page, POST opts out.

GET/HEAD /preferences asks for an address; POST /preferences mails it a fresh link, with the
same answer for every address ("email me a new link", also offered by the page of a dead link).
GET /notices and /notices.json show the published notices (public, cacheable).

Thin by design: parse the event, call the optout layer, map its errors to pages.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.core.errors import MethodNotAllowed, OptoutError
from optout.core.observability import logger, metrics, traced
from optout.unsubscribe.link_request import LinkRequest
from optout.unsubscribe.service import UnsubscribeRequest
from optout.web.http import body_bytes, http_status
from optout.web.pages import HtmlPage, negotiate_language

wiring.unsubscribe_settings()  # at init: a missing or bad variable fails the cold start, naming it

app = APIGatewayHttpResolver()
ALLOW = "GET, HEAD, POST"


def _request() -> UnsubscribeRequest:
    event = app.current_event
    return UnsubscribeRequest.from_http(
        event.get_query_string_value("token"), event.headers, event.body, bool(event.is_base64_encoded)
    )


def _response(page: HtmlPage) -> Response[str]:
    return Response(status_code=page.status, body=page.body, headers=dict(page.headers))


@app.get("/unsubscribe")
def show() -> Response[str]:
    metrics.add_metric(name="PreferencePageViews", unit=MetricUnit.Count, value=1)
    return _response(wiring.unsubscribe().show(_request()))


@app.route("/unsubscribe", method="HEAD")
def head() -> Response[str]:
    metrics.add_metric(name="PreferencePageViews", unit=MetricUnit.Count, value=1)
    page = wiring.unsubscribe().show(_request())
    return Response(status_code=page.status, body="", headers=dict(page.headers))


@app.post("/unsubscribe")
def submit() -> Response[str]:
    page, outcome = wiring.unsubscribe().submit(_request())
    metrics.add_metric(name="ConsentChanges", unit=MetricUnit.Count, value=len(outcome.events))
    logger.info(
        "consent submitted",
        extra={
            "changed": outcome.changed,
            "scopes": [e.scope for e in outcome.events],
            "key": outcome.state.address_key[:12],
        },
    )
    return _response(page)


@app.route("/unsubscribe", method=["PUT", "PATCH", "DELETE", "OPTIONS"])
def not_allowed() -> Response[str]:
    raise MethodNotAllowed("use GET to view preferences or POST to change them")


def _language() -> str:
    return negotiate_language(app.current_event.headers.get("accept-language"))


@app.get("/preferences")
def link_form() -> Response[str]:
    return _response(wiring.link_requests().form(_language()))


@app.route("/preferences", method="HEAD")
def link_form_head() -> Response[str]:
    page = wiring.link_requests().form(_language())
    return Response(status_code=page.status, body="", headers=dict(page.headers))


@app.post("/preferences")
def request_link() -> Response[str]:
    event = app.current_event
    request = LinkRequest(
        body=body_bytes(event.body, bool(event.is_base64_encoded)),
        content_type=event.headers.get("content-type"),
        source_ip=event.request_context.http.source_ip,
        language=_language(),
        seconds_left=app.lambda_context.get_remaining_time_in_millis() / 1000,
    )
    result = wiring.link_requests().request(request)
    metrics.add_metric(name="NewLinkRequests", unit=MetricUnit.Count, value=1)
    if result.outcome == "sent":
        metrics.add_metric(name="NewLinksSent", unit=MetricUnit.Count, value=1)
    key = result.address_key[:12] if result.address_key else None
    logger.info("new link requested", extra={"outcome": result.outcome, "key": key})
    return _response(result.page)


@app.route("/preferences", method=["PUT", "PATCH", "DELETE", "OPTIONS"])
def link_not_allowed() -> Response[str]:
    raise MethodNotAllowed("use GET to ask for a new link or POST to send one")


@app.get("/notices")
def public_notices() -> Response[str]:
    from optout.notices.public import notices_page  # the notice models: not paid for by the other routes

    settings = wiring.unsubscribe_settings()
    notices = wiring.public_notices().current()
    return _response(notices_page(notices, _language(), settings.brand_name, settings.public_notices_max_age))


@app.get("/notices.json")
def public_notices_json() -> Response[dict[str, Any]]:
    from optout.notices.public import notices_json

    max_age = wiring.unsubscribe_settings().public_notices_max_age
    body, headers = notices_json(wiring.public_notices().current(), max_age)
    return Response(status_code=200, body=body, headers=headers)


@app.exception_handler(OptoutError)  # type: ignore[untyped-decorator]
def rejected(exc: OptoutError) -> Response[str]:
    metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
    logger.info("request rejected", extra={"code": exc.code, "status": http_status(exc)})
    if app.current_event.path == "/preferences":  # the form again, saying the request could not be read
        page = wiring.link_requests().form(_language(), http_status(exc), "error_generic")
        response = _response(page)
        if isinstance(exc, MethodNotAllowed):
            response.headers["Allow"] = ALLOW
        return response
    try:
        request = _request()
    except OptoutError:
        request = UnsubscribeRequest(token=None)
    response = _response(wiring.unsubscribe().error(exc, request))
    if isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = ALLOW
    return response


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
