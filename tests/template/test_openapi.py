"""The committed OpenAPI document (docs/openapi.json) matches the code and the template."""

from __future__ import annotations

import json

from optout_local.openapi import generate
from optout_local.template import ROOT, load_template

COMMITTED = ROOT / "docs" / "openapi.json"


def test_the_committed_document_is_what_the_code_generates() -> None:
    generated = generate()
    assert COMMITTED.read_text(encoding="utf-8") == generated, "run `optout openapi` and commit docs/openapi.json"


def test_every_route_in_the_template_is_documented() -> None:
    paths = json.loads(COMMITTED.read_text())["paths"]
    template = load_template()
    for name, resource in template["Resources"].items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            path, method = event["Properties"]["Path"], event["Properties"]["Method"].lower()
            assert path in paths, f"{name}: {path} is routed but not documented"
            if method != "any":
                assert method in paths[path], f"{name}: {method.upper()} {path} is routed but not documented"
    create = paths["/admin/notices"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"], "the create body is described"
