"""Unsubscribe: GET/HEAD /unsubscribe shows the preference page, POST opts out.

Thin by design: parse the event, call the optout layer, map its errors to pages.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.errors import MethodNotAllowed, OptoutError
from optout.observability import logger, metrics, traced
from optout.pages import HtmlPage
from optout.unsubscribe import UnsubscribeRequest

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


@app.exception_handler(OptoutError)  # type: ignore[untyped-decorator]
def rejected(exc: OptoutError) -> Response[str]:
    metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
    logger.info("request rejected", extra={"code": exc.code, "status": exc.status})
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
