"""One settings model for every function, read once from the environment (template Globals)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, field_validator

TopicKind = Literal["optional", "required"]


class Topic(BaseModel, frozen=True):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: TopicKind

    @property
    def optional(self) -> bool:
        return self.kind == "optional"


DEFAULT_TOPICS: tuple[Topic, ...] = (
    Topic(name="marketing", kind="optional"),
    Topic(name="product", kind="optional"),
    Topic(name="policy", kind="required"),
    Topic(name="security", kind="required"),
)


class Settings(BaseModel, frozen=True):
    environment: str = "dev"
    brand_name: str = "Example Co"
    suppression_table: str = ""
    signing_keys_secret: str = ""
    pepper_secret: str = ""
    token_ttl_days: int = Field(default=365, ge=60)
    key_grace_days: int = Field(default=365, ge=60)
    max_form_bytes: int = Field(default=8192, ge=256)
    secrets_max_age_seconds: int = Field(default=300, ge=0)
    topics: tuple[Topic, ...] = DEFAULT_TOPICS
    public_base_url: str = ""
    api_id: str = ""
    region: str = ""  # the Lambda runtime's AWS_REGION, read by from_env
    support_contact: str = "support@example.com"
    sms_provider: Literal["sns", "end-user-messaging"] = "sns"
    sms_origination_identity: str = ""
    sms_configuration_set: str = ""
    sms_opt_out_list: str = ""
    sms_sender_id: str = ""
    twilio_auth_token_secret: str = ""
    max_sms_body: int = Field(default=1600, ge=1)
    notices_table: str = ""
    manifest_bucket: str = ""
    dispatch_queue_url: str = ""
    send_queue_url: str = ""
    sender_address: str = "notices@example.com"
    ses_configuration_set: str = ""
    email_rate_per_second: float = Field(default=14.0, gt=0)
    sms_rate_per_second: float = Field(default=20.0, gt=0)
    default_timezone: str = "America/New_York"
    send_retry_limit: int = Field(default=5, ge=0)
    transient_bounce_limit: int = Field(default=3, ge=1)
    transient_bounce_window_days: int = Field(default=7, ge=1)

    @field_validator("topics")
    @classmethod
    def _unique_topics(cls, topics: tuple[Topic, ...]) -> tuple[Topic, ...]:
        names = [t.name for t in topics]
        if len(set(names)) != len(names):
            raise ValueError("topic names must be unique")
        return topics

    def topic(self, name: str) -> Topic | None:
        return next((t for t in self.topics if t.name == name), None)

    @property
    def links_base_url(self) -> str:
        """Where links point: PublicBaseUrl, else the HTTP API's own execute-api URL."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        if self.api_id and self.region:
            return f"https://{self.api_id}.execute-api.{self.region}.amazonaws.com"
        return ""

    @property
    def optional_topics(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics if t.optional)

    @property
    def required_topics(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics if not t.optional)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        prefix = "OPTOUT_"
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get(prefix + name.upper())
            if raw is None or raw == "":
                continue
            values[name] = json.loads(raw) if name == "topics" else raw
        values.setdefault("region", env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "")
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
