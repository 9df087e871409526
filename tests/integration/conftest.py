"""Fixtures the integration tests share."""

from __future__ import annotations

import pytest

from optout_local.provision import Stack
from optout_local.runtime import LambdaContext
from tests.integration.notice_pipeline import Pipeline


@pytest.fixture
def pipeline(aws: Stack, lambda_context: LambdaContext) -> Pipeline:
    return Pipeline(aws, lambda_context)
