"""TLS and SASL settings, checked together at start-up: :func:`security_settings`.

Its one job is to turn the security options into validated
:class:`~beatwatch.kafka.settings.KafkaSettings`: every inconsistent, missing
or unreadable setting is one :class:`~beatwatch.errors.ConfigError` line
naming the option, never the password, and the password is registered with
:class:`~beatwatch.kafka.redaction.SecretRedactor`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from beatwatch.errors import ConfigError
from beatwatch.kafka.redaction import SecretRedactor
from beatwatch.kafka.settings import KAFKA_PYTHON_CLIENT, KafkaSettings

log = logging.getLogger(__name__)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# The password never travels as a flag (it would show in `ps`): environment or file only.
SASL_PASSWORD_ENV = "BEATWATCH_SASL_PASSWORD"


def _readable_file(option: str, path: str) -> str:
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"{option}: {path} is a directory, not a file")
    if not file.is_file():
        raise ConfigError(f"{option}: no such file {path}")
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path} ({exc.strerror})") from None
    return str(file)


def security_settings(
    *,
    bootstrap_servers: str,
    security_protocol: str = "PLAINTEXT",
    ssl_cafile: str = "",
    ssl_certfile: str = "",
    ssl_keyfile: str = "",
    sasl_mechanism: str = "",
    sasl_username: str = "",
    sasl_password_file: str = "",
    sasl_password: str = "",
    client: str = KAFKA_PYTHON_CLIENT,
) -> KafkaSettings:
    """Check TLS and SASL settings together and turn them into kafka-python arguments.

    Args:
        bootstrap_servers: comma-separated ``host:port`` list.
        security_protocol: one of ``SECURITY_PROTOCOLS``.
        ssl_cafile: CA bundle to verify the broker (TLS protocols only).
        ssl_certfile: client certificate for mutual TLS.
        ssl_keyfile: the client certificate's private key (needs ``ssl_certfile``).
        sasl_mechanism: one of ``SASL_MECHANISMS`` (SASL protocols only).
        sasl_username: SASL user.
        sasl_password_file: file whose first line is the password.
        sasl_password: the password itself (from ``BEATWATCH_SASL_PASSWORD``).
        client: the client library, one of ``KAFKA_CLIENTS``.

    Raises:
        ConfigError: one clear line naming the offending option; never the password.
    """
    if security_protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"--security-protocol {security_protocol!r}: "
            f"choose from {', '.join(SECURITY_PROTOCOLS)}"
        )
    uses_tls = security_protocol in ("SSL", "SASL_SSL")
    uses_sasl = security_protocol.startswith("SASL_")
    extra: dict[str, Any] = {}
    tls_options = {
        "--ssl-cafile": ssl_cafile,
        "--ssl-certfile": ssl_certfile,
        "--ssl-keyfile": ssl_keyfile,
    }
    given_tls = [name for name, value in tls_options.items() if value]
    if given_tls and not uses_tls:
        raise ConfigError(
            f"{', '.join(given_tls)} given with --security-protocol {security_protocol}: "
            "TLS options need SSL or SASL_SSL"
        )
    if ssl_keyfile and not ssl_certfile:
        raise ConfigError("--ssl-keyfile given without --ssl-certfile")
    for (option, value), key in zip(
        tls_options.items(), ("ssl_cafile", "ssl_certfile", "ssl_keyfile"), strict=True
    ):
        if value:
            extra[key] = _readable_file(option, value)
    given_sasl = [
        name
        for name, value in (
            ("--sasl-mechanism", sasl_mechanism),
            ("--sasl-username", sasl_username),
            ("--sasl-password-file", sasl_password_file),
            (SASL_PASSWORD_ENV, sasl_password),
        )
        if value
    ]
    if given_sasl and not uses_sasl:
        raise ConfigError(
            f"{', '.join(given_sasl)} given with --security-protocol {security_protocol}: "
            "SASL options need SASL_PLAINTEXT or SASL_SSL"
        )
    if uses_sasl:
        if sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"--security-protocol {security_protocol} needs --sasl-mechanism "
                f"({', '.join(SASL_MECHANISMS)})"
            )
        if not sasl_username:
            raise ConfigError(f"--sasl-mechanism {sasl_mechanism} needs --sasl-username")
        if sasl_password and sasl_password_file:
            raise ConfigError(
                f"give the SASL password once: {SASL_PASSWORD_ENV} or --sasl-password-file, "
                "not both"
            )
        password = sasl_password
        if sasl_password_file:
            path = _readable_file("--sasl-password-file", sasl_password_file)
            lines = Path(path).read_text(encoding="utf-8").splitlines()
            password = lines[0] if lines else ""
            if not password:
                raise ConfigError(f"--sasl-password-file: {path} is empty")
        if not password:
            raise ConfigError(
                f"--sasl-mechanism {sasl_mechanism} needs a password: set {SASL_PASSWORD_ENV} "
                "or --sasl-password-file"
            )
        SecretRedactor.register(password)
        extra.update(
            sasl_mechanism=sasl_mechanism,
            sasl_plain_username=sasl_username,
            sasl_plain_password=password,
        )
        if security_protocol == "SASL_PLAINTEXT":
            log.warning(
                "SASL over SASL_PLAINTEXT: the %s exchange is not encrypted; use SASL_SSL "
                "outside a trusted network",
                sasl_mechanism,
            )
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        security_protocol=security_protocol,
        extra=extra,
        client=client,
    )
