"""A SigV4-signed client for the admin API, locally (key ``testing``) and in AWS (your credentials)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import click
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@dataclass
class AdminClient:
    base_url: str
    region: str
    credentials: Credentials

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                query: dict[str, Any] | None = None) -> tuple[int, Any]:  # fmt: skip
        url = self.base_url.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else b""
        request = AWSRequest(
            method=method, url=url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        # The signature covers the body's SHA-256, never UNSIGNED-PAYLOAD (botocore's https default,
        # made explicit): a captured request's body cannot be swapped under it.
        request.context["payload_signing_enabled"] = True
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(request)
        try:
            response = requests.request(method, url, data=data, headers=dict(request.headers.items()), timeout=60)
        except requests.ConnectionError as exc:
            raise click.ClickException(f"cannot reach the admin API at {self.base_url}") from exc
        except requests.Timeout as exc:
            raise click.ClickException(f"the admin API at {self.base_url} did not answer within 60 s") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"code": "not_json", "message": response.text[:500]}}
        return response.status_code, payload

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        status, payload = self.request(method, path, **kwargs)
        if status >= 400:
            raise refusal(status, payload)
        return payload


def refusal(status: int, payload: Any) -> click.ClickException:
    """The admin API's error answer as the CLI says it: status, code, message, and each bad field."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        lines = [f"{status} {error.get('code')}: {error.get('message')}"]
        lines += [f"  {f['path']}: {f['message']}" for f in error.get("fields", [])]
        return click.ClickException("\n".join(lines))
    return click.ClickException(f"{status}: {payload}")
