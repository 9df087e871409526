"""AdminApi (AWS_IAM): notices and dry runs, their evidence; suppressions one by one or in bulk; a data
subject's export and erasure; unsubscribe links; the opt-out ledger.

Thin by design: the body's size and shape are checked before it is parsed (optout.web.http), Powertools
validates it against the pydantic model, and the layer does the rest. Every refusal is a 4xx in one
JSON error format.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.core.errors import NotFound, OptoutError
from optout.core.observability import logger, metrics, traced
from optout.notices.model import NOTICE_KINDS, NoticeRequest, PublishRequest
from optout.privacy.erasure import EraseRequest
from optout.privacy.subject import LinkRequest, SubjectExportRequest
from optout.suppression.admin import LookupRequest, SuppressionRequest
from optout.suppression.bulk import ImportRequest
from optout.web.http import error_body, http_status, json_body_refusal, validation_error_body

wiring.admin_api_settings()  # at init: a missing or bad variable fails the cold start, naming it

app = APIGatewayHttpResolver(enable_validation=True)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # a time without a zone is UTC


def _actor() -> str:
    iam = app.current_event.request_context.authorizer.iam
    return (iam.user_arn or iam.caller_id or "unknown") if iam else "unknown"


@app.post("/admin/notices")
def create_notice(request: Annotated[NoticeRequest, Body()]) -> Response[str]:
    key = app.current_event.headers.get("idempotency-key")
    notice, created = wiring.notice_admin().create(request, key, _actor())
    metrics.add_metric(name="NoticesCreated" if created else "NoticesReplayed", unit=MetricUnit.Count, value=1)
    logger.info("notice created", extra={"notice_id": notice.id, "kind": notice.kind, "new": created})
    return Response(
        202,
        content_type="application/json",
        body=notice.model_dump_json(),
        headers={"Location": f"/admin/notices/{notice.id}"},
    )


@app.get("/admin/notices")
def list_notices(
    since: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> dict[str, Any]:
    notices, token = wiring.notice_admin().list(_utc(since) if since else None, limit, next_token)
    return {"items": [n.summary() for n in notices], "next_token": token}


@app.get("/admin/compliance/opt-outs")
def list_opt_outs(
    since: Annotated[datetime, Query()],
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> dict[str, Any]:
    """One page of opt-outs with the sends after each (``optout compliance report`` adds the pages up)."""
    return wiring.opt_out_ledger().page(_utc(since), next_token, app.lambda_context.get_remaining_time_in_millis)


@app.get("/admin/notices/<notice_id>")
def get_notice(notice_id: str) -> dict[str, Any]:
    admin = wiring.notice_admin()
    document = admin.get(notice_id).public()
    publication = admin.publication(notice_id)
    return {**document, "publication": publication.public() if publication else None}


@app.post("/admin/notices/<notice_id>/publish")
def publish_notice(notice_id: str, request: Annotated[PublishRequest, Body()]) -> dict[str, Any]:
    published = wiring.notice_admin().publish(notice_id, request.until)
    logger.info("notice published", extra={"notice_id": notice_id, "actor": _actor()})
    return published.public()


@app.post("/admin/notices/<notice_id>/withdraw")
def withdraw_notice(notice_id: str) -> dict[str, Any]:
    withdrawn = wiring.notice_admin().withdraw(notice_id)
    logger.info("notice withdrawn", extra={"notice_id": notice_id, "actor": _actor()})
    return withdrawn.public()


@app.get("/admin/notices/<notice_id>/deliveries")
def list_deliveries(
    notice_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    records, token = wiring.notice_admin().deliveries(notice_id, limit, next_token)
    return {"items": [r.model_dump(mode="json") for r in records], "next_token": token}


@app.post("/admin/suppressions/lookup")
def lookup_suppression(request: Annotated[LookupRequest, Body()]) -> dict[str, Any]:
    return wiring.suppression_admin().lookup(request)


@app.post("/admin/suppressions")
def add_suppression(request: Annotated[SuppressionRequest, Body()]) -> Response[str]:
    result, changed = wiring.suppression_admin().add(request, _actor())
    logger.info(
        "suppression added", extra={"scope": request.scope, "changed": changed, "key": result["address_key"][:12]}
    )
    return Response(201 if changed else 200, content_type="application/json", body=json.dumps(result))


@app.post("/admin/suppressions/remove")
def remove_suppression(request: Annotated[SuppressionRequest, Body()]) -> dict[str, Any]:
    result, changed = wiring.suppression_admin().remove(request, _actor())
    logger.info(
        "suppression lifted", extra={"scope": request.scope, "changed": changed, "key": result["address_key"][:12]}
    )
    return result


@app.post("/admin/suppressions/import")
def import_suppressions(request: Annotated[ImportRequest, Body()]) -> dict[str, Any]:
    """A batch of rows (at most 500); one result per row, in order. Sending a batch again changes nothing."""
    result = wiring.suppression_bulk().import_rows(request, _actor())
    counts = {name: result[name] for name in ("imported", "unchanged", "invalid")}
    logger.info("suppressions imported", extra={"rows": len(request.rows), **counts, "actor": _actor()})
    return result


@app.get("/admin/suppressions/export")
def export_suppressions(
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> dict[str, Any]:
    """One page of every suppression, by address key (a page may be empty and still have a next one)."""
    rows, token = wiring.suppression_bulk().export_page(limit, next_token)
    return {"items": rows, "next_token": token}


@app.post("/admin/subjects/export")
def export_subject(request: Annotated[SubjectExportRequest, Body()]) -> dict[str, Any]:
    """The subject's state, history and erasures, and a page of its deliveries (next_token: the next)."""
    document = wiring.subject_export().export(request)
    logger.info("subject exported", extra={"key": document["subject"]["address_key"][:12], "actor": _actor()})
    return document


@app.post("/admin/links")
def issue_link(request: Annotated[LinkRequest, Body()]) -> dict[str, Any]:
    """A signed unsubscribe token for an address and an optional topic."""
    issued = wiring.link_issuer().issue(request)
    logger.info("link issued", extra={"key": issued["address_key"][:12], "topic": issued["topic"], "actor": _actor()})
    return issued


@app.post("/admin/subjects/erase")
def erase_subject(request: Annotated[EraseRequest, Body()]) -> dict[str, Any]:
    result = wiring.subject_eraser().erase(request, _actor(), app.lambda_context.get_remaining_time_in_millis)
    logger.info("subject erased", extra={"key": result["address_key"][:12], **result["erasure"]["removed"]})
    return result


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def invalid(exc: RequestValidationError) -> Response[str]:
    return Response(422, content_type="application/json", body=validation_error_body(exc.errors(), NOTICE_KINDS))


@app.exception_handler(OptoutError)  # type: ignore[untyped-decorator]
def rejected(exc: OptoutError) -> Response[str]:
    status = http_status(exc)
    logger.info("admin request rejected", extra={"code": exc.code, "status": status})
    return Response(status, content_type="application/json", body=error_body(exc))


@app.not_found
def no_route(_: Exception) -> Response[str]:
    # a path parameter the route's pattern refuses ends here too: our error format, not Powertools'
    return Response(404, content_type="application/json", body=error_body(NotFound("no such resource")))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return json_body_refusal(event) or app.resolve(event, context)
