"""SmsWebhook: POST /sms/twilio, a Twilio-style signed inbound SMS webhook answered with TwiML.

Thin by design: parse the event, call the optout layer, map its errors to JSON.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.core.errors import OptoutError
from optout.core.observability import logger, metrics, traced
from optout.web.http import body_bytes, error_body, http_status, public_url

wiring.sms_webhook_settings()  # at init: a missing or bad variable fails the cold start, naming it

app = APIGatewayHttpResolver()


@app.post("/sms/twilio")
def twilio_inbound() -> Response[str]:
    event = app.current_event
    base = wiring.sms_webhook_settings().public_base_url
    url = public_url(base, event.headers, event.request_context.domain_name, event.raw_path, event.raw_query_string)
    answer = wiring.sms_webhook().receive_twilio(
        url,
        event.headers.get("x-twilio-signature"),
        body_bytes(event.body, bool(event.is_base64_encoded)),
        event.headers.get("content-type"),
        seconds_left=app.lambda_context.get_remaining_time_in_millis() / 1000,
    )
    metrics.add_metric(name="InboundSms", unit=MetricUnit.Count, value=1)
    if answer.handed_off:  # recorded by the queue, its reply sent by SMS
        metrics.add_metric(name="InboundSmsHandedOff", unit=MetricUnit.Count, value=1)
    return Response(status_code=200, content_type="text/xml; charset=utf-8", body=answer.twiml)


@app.exception_handler(OptoutError)  # type: ignore[untyped-decorator]
def rejected(exc: OptoutError) -> Response[str]:
    metrics.add_metric(name="RejectedWebhooks", unit=MetricUnit.Count, value=1)
    status = http_status(exc)
    logger.info("webhook rejected", extra={"code": exc.code, "status": status})
    return Response(status_code=status, content_type="application/json", body=error_body(exc))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
