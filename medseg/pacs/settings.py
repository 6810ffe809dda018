"""Connection settings of a PACS: a config file, environment variables, then the command line.

:class:`PacsSettings` holds what both protocols need: the DICOMweb service base URL (DICOM
PS3.18 §8.2), the DIMSE AE titles and address (PS3.8 association), TLS, credentials, the
time-out and the retry policy. :func:`load_settings` merges, from lowest to highest priority:

1. a YAML or JSON file (``--pacs-config``);
2. environment variables ``MEDSEG_PACS_<FIELD>`` (``MEDSEG_PACS_URL``, ``MEDSEG_PACS_USER``,
   ``MEDSEG_PACS_PASSWORD``, ``MEDSEG_PACS_TOKEN``, ``MEDSEG_PACS_AET``, …);
3. values taken from the command line (a ``dicomweb://`` or ``dimse://`` address, ``--url``).

Passwords and tokens are :class:`pydantic.SecretStr`: they print as ``**********`` and are never
accepted from the command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from medseg.errors import ConfigError, InputNotFoundError

ENV_PREFIX = "MEDSEG_PACS_"


class PacsSettings(BaseModel):
    """How to reach one PACS; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, description="DICOMweb service base URL, e.g. https://pacs/dicom-web")
    aet: str = Field("MEDSEG", min_length=1, max_length=16, description="our (calling) AE title")
    called_aet: str = Field("ANY-SCP", min_length=1, max_length=16, description="the PACS's AE title")
    host: str | None = Field(None, description="DIMSE host of the PACS")
    port: int | None = Field(None, ge=1, le=65535, description="DIMSE port of the PACS")
    timeout: float = Field(60.0, gt=0, description="seconds to wait for a connection or an answer")
    verify: bool | str = Field(True, description="check the server's TLS certificate (or a CA bundle path)")
    cert: str | None = Field(None, description="client certificate (PEM) for mutual TLS")
    dimse_tls: bool = Field(False, description="DIMSE over TLS (PS3.15 Annex B), with verify and cert")
    auth: Literal["none", "basic", "bearer"] | None = Field(
        None, description="HTTP authentication (default: bearer with a token, basic with a user)"
    )
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    retries: int = Field(3, ge=0, le=20, description="retries after a connection error or HTTP 5xx")
    backoff: float = Field(1.0, ge=0, description="seconds before the first retry; doubled each time")
    backoff_max: float = Field(30.0, ge=0, description="longest wait between two tries")

    @property
    def auth_mode(self) -> str:
        """``none``, ``basic`` or ``bearer`` (inferred from the credentials when not set)."""
        if self.auth:
            return self.auth
        if self.token is not None:
            return "bearer"
        return "basic" if self.user else "none"

    @property
    def secrets(self) -> list[str]:
        """The secret values (to scrub from any text shown to a user)."""
        return [s.get_secret_value() for s in (self.password, self.token) if s and s.get_secret_value()]

    def describe_dimse(self) -> str:
        """``AET@host:port`` of the PACS."""
        return f"{self.called_aet}@{self.host}:{self.port}"


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputNotFoundError(f"no such PACS config: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        # Only where: the message of either parser may quote the offending line (a password).
        raise ConfigError(
            f"cannot parse PACS config {path}: JSON syntax error at line {exc.lineno}, column {exc.colno}"
        ) from None
    except Exception as exc:  # yaml syntax errors
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(
            f"cannot parse PACS config {path}: {type(exc).__name__}{where}",
            hint="check the quotes and indentation there",
        ) from None
    data = data or {}
    if isinstance(data, dict) and isinstance(data.get("pacs"), dict) and len(data) == 1:
        data = data["pacs"]  # allow a top-level "pacs:" section
    if not isinstance(data, dict):
        raise ConfigError(f"PACS config {path} must be a mapping of settings")
    return _normalise(data)


def _from_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PacsSettings.model_fields:
        value = environ.get(ENV_PREFIX + name.upper())
        if value not in (None, ""):
            out[name] = value
    return _normalise(out)


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """``verify: "false"`` (a string, from the environment or a quoted YAML value) is a boolean,
    not the path of a CA bundle called ``false``."""
    verify = data.get("verify")
    if isinstance(verify, str) and verify.strip().lower() in ("0", "false", "no", "1", "true", "yes"):
        data = {**data, "verify": verify.strip().lower() in ("1", "true", "yes")}
    return data


def load_settings(
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> PacsSettings:
    """Settings from ``config`` (YAML/JSON), then ``MEDSEG_PACS_*`` variables, then ``overrides``.

    Raises:
        InputNotFoundError: ``config`` does not exist.
        ConfigError: an unknown key or a bad value (secrets are never quoted back).
    """
    data: dict[str, Any] = _read_file(Path(config)) if config else {}
    data.update(_from_env(os.environ if environ is None else environ))
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        settings = PacsSettings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        raise ConfigError(
            f"invalid PACS settings: {problems}",
            hint="see docs/pacs.md for the keys and MEDSEG_PACS_* variables",
        ) from None
    if settings.password is not None and not settings.user:
        raise ConfigError(
            "a PACS password is set but no user",
            hint="set user: in --pacs-config or MEDSEG_PACS_USER (or remove the password)",
        )
    return settings
