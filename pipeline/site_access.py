"""How a download reaches a site that pushes back, as pure helpers: yt-dlp's --cookies-from-browser and
--yt-dlp-option forms parsed, and what is kept of them (lineage, info.json) stripped of secrets."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

_SECRET = re.compile(r"token|pass|secret|cookie|auth|key|user|login|header|session|visitor|proxy", re.IGNORECASE)


def redact(key: str, value: Any) -> Any:
    """``value`` for lineage: "<redacted>" where the key looks secret, recursively through dicts and lists."""
    if _SECRET.search(str(key)):
        return "<redacted>"
    if isinstance(value, dict):
        return {k: redact(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(key, v) for v in value]
    if isinstance(value, str) and "=" in value:  # a "name=value" pair inside a list (extractor args)
        name, _, rest = value.partition("=")
        return f"{name}=<redacted>" if _SECRET.search(name) else value
    return value


def proxy_without_credentials(proxy: str) -> str:
    """``socks5://user:pw@host:1080`` -> ``socks5://host:1080``: where it went, not who it logged in as."""
    parts = urlsplit(proxy)
    if not parts.scheme or parts.hostname is None:
        return "<unparsed>"
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{netloc}"


_SECRET_HEADER = re.compile(r"cookie|auth|token|key|secret|session|pass|visitor", re.IGNORECASE)


def scrub_secrets(info: Any) -> Any:
    """yt-dlp's info dict without what a login put in it (each format's ``cookies``, Cookie and
    Authorization headers), so info.json, kept and shared with the data, holds no secret."""
    if isinstance(info, dict):
        out = {}
        for k, v in info.items():
            if k == "cookies":
                continue
            if k == "http_headers" and isinstance(v, dict):  # a login's, or one given as a yt-dlp option
                v = {h: x for h, x in v.items() if not _SECRET_HEADER.search(str(h))}
            out[k] = scrub_secrets(v)
        return out
    if isinstance(info, list):
        return [scrub_secrets(v) for v in info]
    return info


def parse_ytdlp_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line or the environment -> (yt-dlp API parameter, value).

    VALUE is JSON where it parses (numbers, booleans, objects), else a string. ``extractor_args`` also
    takes yt-dlp's own command-line form ``IE:ARG=V1,V2;ARG2=V`` (e.g. ``youtube:po_token=web.gvs+TOKEN``).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", key):
        raise ValueError(f"yt-dlp option {text!r}: expected KEY=VALUE with KEY a yt-dlp parameter "
                         "(e.g. extractor_args=youtube:player_client=web)")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    if key == "extractor_args" and isinstance(value, str):
        ie, colon, args = value.partition(":")
        if not colon or not ie:
            raise ValueError(f"extractor_args {value!r}: expected IE:ARG=VALUE[;ARG=VALUE], "
                             "e.g. youtube:player_client=web")
        parsed: dict[str, list[str]] = {}
        for part in filter(None, args.split(";")):
            name, eq, vals = part.partition("=")
            if not eq:
                raise ValueError(f"extractor_args {value!r}: {part!r} is not ARG=VALUE")
            parsed[name.strip().replace("-", "_")] = vals.split(",")
        value = {ie.strip().lower(): parsed}
    return key, value


def browser_spec(text: str) -> tuple[str, str | None, str | None, str | None]:
    """``BROWSER[+KEYRING][:PROFILE][::CONTAINER]`` (yt-dlp's --cookies-from-browser) -> its API tuple."""
    m = re.fullmatch(r"(?P<name>[^+:]+)(?:\+(?P<keyring>[^:]+))?(?::(?P<profile>.+?))?(?:::(?P<container>.+))?",
                     text.strip())
    if m is None:
        raise ValueError(f"--cookies-from-browser {text!r}: expected BROWSER[+KEYRING][:PROFILE][::CONTAINER]")
    return (m["name"].lower(), m["profile"] or None, m["keyring"].upper() if m["keyring"] else None,
            m["container"] or None)
