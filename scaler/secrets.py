"""Keep secrets out of the record: credentials in URIs and secret-looking keys are redacted before
anything is logged as a param or printed."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
SECRET_KEY = re.compile(r"(token|secret|password|passwd|api[_-]?key|credential)", re.IGNORECASE)
SECRET_QUERY = re.compile(
    r"((?:token|secret|password|passwd|api[_-]?key|access[_-]?key|sig|signature)=)[^&]*",
    re.IGNORECASE,
)


def redact_uri(uri: str) -> str:
    """`https://user:tok@host/x?token=abc` -> `https://***@host/x?token=***`."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = SECRET_QUERY.sub(rf"\1{REDACTED}", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return uri  # untouched (urlunsplit would also normalise sqlite:////abs paths)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_params(params: dict[str, str]) -> dict[str, str]:
    """Params with secret-named keys masked and credentials stripped from URI-looking values."""
    out = {}
    for key, value in params.items():
        if SECRET_KEY.search(key.rsplit(".", 1)[-1]):
            out[key] = REDACTED
        elif isinstance(value, str) and "://" in value:
            out[key] = redact_uri(value)
        else:
            out[key] = value
    return out
