"""Settings shared by every service process: Kafka connection and security, topic prefix, logging, HTTP port.

Read once, in the process's composition root (``create_app(settings)``), and passed down. Each service
subclasses :class:`Settings` with its own fields and its own default HTTP port (docs/TEAM.md).
Environment variables use the prefix ``CLD_``; ``KAFKA_BOOTSTRAP_SERVERS`` is honoured too, because the
Makefile, ``deploy/kafka/kafka.sh`` and CI speak that name.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cld_governance.loaders import resolve_registry
from cld_governance.tenancy import Registry, TenancyMode
from cld_schemas.topics import prefixed

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]


class StartupError(Exception):
    """A process cannot start for a reason the operator can fix (e.g. a read-only state directory). Its message
    is one clear line (no personal data); ``cld serve`` prints it and exits non-zero, without a traceback."""


class Settings(BaseSettings):
    """What every CLD service process needs. Subclass per service; never instantiate at import time."""

    model_config = SettingsConfigDict(env_prefix="CLD_", extra="ignore", populate_by_name=True, frozen=True)

    service_name: str = Field(default="cld", description="Name of the service in logs, metrics and client ids.")
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("CLD_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated Kafka bootstrap servers (host:port). Use 127.0.0.1, not localhost, locally.",
    )
    topic_prefix: str = Field(
        default="",
        description="Prefix put before every topic name (tests use one per test to keep real-broker runs apart).",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT (local broker), SSL, or SASL_SSL (SCRAM over TLS)."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_SSL."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL SCRAM user name (SASL_SSL only).")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL SCRAM password (SASL_SSL only); prefer kafka_sasl_password_file."
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None, description="File holding the SASL SCRAM password (e.g. a mounted Kubernetes secret)."
    )
    kafka_ssl_cafile: Path | None = Field(default=None, description="CA bundle to verify the brokers (PEM).")
    kafka_ssl_certfile: Path | None = Field(default=None, description="Client certificate for mutual TLS (PEM).")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="Private key of the client certificate (PEM).")
    create_topics: bool = Field(
        default=True, description="Create missing contract topics at start-up (off where topics are managed)."
    )
    topic_partitions: int = Field(default=6, ge=1, description="Partitions of topics this service creates.")
    topic_replication: int = Field(default=1, ge=1, description="Replication factor of topics this service creates.")
    kafka_linger_ms: int = Field(
        default=5, ge=0, le=1000, description="Producer linger: wait this long to fill a batch (throughput)."
    )
    kafka_max_batch_size: int = Field(
        default=256 * 1024, ge=16 * 1024, description="Producer batch size per partition, in bytes."
    )
    consumer_max_records: int = Field(
        default=500, ge=1, le=10_000, description="Most records a batch subscriber handles at once."
    )
    consumer_batch_timeout_ms: int = Field(
        default=100, ge=1, le=5000, description="How long a batch subscriber waits to fill a batch."
    )
    consumer_lag_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often cld_consumer_lag is refreshed for the service's own group at the latest (it is also "
        "refreshed 0.5 s after each processed batch).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of the process (logs are JSON lines on stderr)."
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server (API, /metrics, /health) binds.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="HTTP port of this service process.")
    health_timeout_seconds: float = Field(
        default=2.0, gt=0, description="How long /health/ready waits for the broker to answer."
    )
    consumer_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="/health/ready fails once every consumed batch has failed (nothing committed) for this long.",
    )

    tenants_file: Path | None = Field(
        default=None,
        description=(
            "Tenants registry (LAs, sources with hashed API keys, operators; docs/governance.md). Required "
            "unless tenancy_mode is open."
        ),
    )
    tenancy_mode: TenancyMode = Field(
        default=TenancyMode.REQUIRED,
        description=(
            "required: refuse to start without tenants_file. open: no registry, every caller may act for every "
            "LA (local demos on synthetic data only; logged as a warning at start)."
        ),
    )
    sharing_policy_file: Path | None = Field(
        default=None,
        description="Sharing policy (recipients and legal bases); default: the packaged policy (docs/governance.md).",
    )

    # -- dead letters (issue 10, finding 10) ----------------------------------------------------------------
    deadletter_key: SecretStr | None = Field(
        default=None,
        # No min_length here: pydantic's error would quote the (secret) value; checked where it is read.
        description=(
            "Deployment secret (at least 16 characters) keying the payload fingerprint of dead letters "
            "(HMAC-SHA256). Unset: dead letters carry no fingerprint. Prefer deadletter_key_file."
        ),
    )
    deadletter_key_file: Path | None = Field(
        default=None, description="File holding the dead-letter fingerprint key (e.g. a mounted Kubernetes secret)."
    )

    def deadletter_fingerprint_key(self) -> bytes | None:
        """The key of dead-letter payload fingerprints (None: no fingerprint). Raises ValueError naming the
        setting when the key is too short or its file cannot be read."""
        if self.deadletter_key_file is not None:
            try:
                text = self.deadletter_key_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"CLD_DEADLETTER_KEY_FILE cannot be read ({type(exc).__name__})") from None
        elif self.deadletter_key is not None:
            text = self.deadletter_key.get_secret_value().strip()
        else:
            return None
        if len(text) < 16:
            raise ValueError("the dead-letter key (CLD_DEADLETTER_KEY[_FILE]) must be at least 16 characters")
        return text.encode("utf-8")

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        if self.kafka_security_protocol == "SASL_SSL":
            if not self.kafka_sasl_username:
                raise ValueError("kafka_sasl_username is required with SASL_SSL")
            if self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
                raise ValueError("kafka_sasl_password or kafka_sasl_password_file is required with SASL_SSL")
        return self

    def registry(self) -> Registry:
        """The tenants registry this process enforces (raises TenancyError naming the setting when absent)."""
        return resolve_registry(self.tenants_file, self.tenancy_mode)

    def topic(self, name: str) -> str:
        """The deployed name of a contract topic (``cld_schemas.topics``)."""
        return prefixed(self.topic_prefix, name)

    def sasl_password(self) -> str | None:
        if self.kafka_sasl_password_file is not None:
            return self.kafka_sasl_password_file.read_text(encoding="utf-8").strip()
        return self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        ctx = ssl.create_default_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)
        if self.kafka_ssl_certfile is not None:
            ctx.load_cert_chain(
                str(self.kafka_ssl_certfile), str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None
            )
        return ctx

    def kafka_security(self) -> BaseSecurity | None:
        """FastStream security object for KafkaBroker / KafkaRouter (None for PLAINTEXT)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        ctx = self.ssl_context()
        if self.kafka_security_protocol == "SSL":
            return BaseSecurity(ssl_context=ctx, use_ssl=True)
        user, password = self.kafka_sasl_username or "", self.sasl_password() or ""
        cls = SASLScram256 if self.kafka_sasl_mechanism == "SCRAM-SHA-256" else SASLScram512
        return cls(user, password, ssl_context=ctx, use_ssl=True)

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for plain aiokafka clients (lag monitor, demo, tests, bench)."""
        kwargs: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap_servers}
        if self.kafka_security_protocol == "PLAINTEXT":
            return kwargs
        kwargs["security_protocol"] = self.kafka_security_protocol
        kwargs["ssl_context"] = self.ssl_context()
        if self.kafka_security_protocol == "SASL_SSL":
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password()
        return kwargs
