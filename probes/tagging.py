"""Version tagging: which proton answered, read from the response itself.

Rules are tried in order: response headers, then JSON body fields (dotted paths, list
indexes allowed: ``choices.0.model``), then an optional regex over the body text. The first
rule that yields a value wins. Tagging never raises: malformed, empty, binary or huge bodies
simply do not match, and the result is ``("unknown", "none")``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from probes.errors import ConfigError
from probes.records import UNKNOWN_VERSION

DEFAULT_HEADERS = ("X-Proton-Version", "X-Version")
DEFAULT_JSON_PATHS = ("version", "model_version")

#: Bodies larger than this are not parsed as JSON (the regex still sees the head).
MAX_JSON_BYTES = 1 << 20
#: The regex looks at this much of the body at most.
MAX_REGEX_BYTES = 64 << 10
#: Longer labels are cut: a version is a label, not a document.
MAX_LABEL = 128


@dataclass(frozen=True)
class TagRules:
    """Ordered tagging rules; build with ``TagRules.build`` to validate user input."""

    headers: tuple[str, ...] = DEFAULT_HEADERS
    json_paths: tuple[tuple[str, ...], ...] = tuple(tuple(p.split(".")) for p in DEFAULT_JSON_PATHS)
    regex: re.Pattern[str] | None = None
    _lower_headers: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lower_headers", tuple(h.lower() for h in self.headers))

    @classmethod
    def build(
        cls,
        headers: tuple[str, ...] | list[str] = (),
        json_paths: tuple[str, ...] | list[str] = (),
        regex: str | None = None,
        place: Callable[[str], str] = str,
    ) -> TagRules:
        """Rules from setting values; empty header/path lists fall back to the defaults.

        Errors name ``place(setting)`` (``tag_headers``, ``tag_json``, ``tag_regex``): the
        caller's name for where the value came from (``probes.settings.Place``).
        """
        heads = tuple(h.strip() for h in headers) or DEFAULT_HEADERS
        for h in heads:
            if not h or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", h):
                name = place("tag_headers")
                raise ConfigError(f"{name}: {h!r} is not a header name (e.g. X-Version)")
        paths = tuple(p.strip() for p in json_paths) or DEFAULT_JSON_PATHS
        for p in paths:
            if not p or any(part == "" for part in p.split(".")):
                name = place("tag_json")
                raise ConfigError(f"{name}: {p!r} is not a dotted path (e.g. meta.version)")
        pattern = None
        if regex:
            try:
                pattern = re.compile(regex)
            except re.error as exc:
                raise ConfigError(
                    f"{place('tag_regex')}: {regex!r} is not a regular expression: {exc}"
                ) from exc
            if pattern.groups > 1 and "version" not in pattern.groupindex:
                raise ConfigError(
                    f"{place('tag_regex')}: with several groups, name the version one"
                    " (?P<version>...)"
                )
        return cls(
            headers=heads, json_paths=tuple(tuple(p.split(".")) for p in paths), regex=pattern
        )

    def describe(self) -> dict[str, Any]:
        """The rules as plain data, for the manifest."""
        return {
            "headers": list(self.headers),
            "json_paths": [".".join(p) for p in self.json_paths],
            "regex": self.regex.pattern if self.regex else None,
        }

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> TagRules:
        return cls.build(data.get("headers") or (), data.get("json_paths") or (), data.get("regex"))


DEFAULT_RULES = TagRules()


def _label(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    if not text:
        return None
    return text[:MAX_LABEL]


def _header(headers: Any, lower_names: tuple[str, ...], names: tuple[str, ...]) -> str | None:
    if not headers:
        return None
    if isinstance(headers, dict):
        # Lower-case keys (as the probe builds them) match directly, with no copy.
        for name in lower_names:
            value = _label(headers.get(name))
            if value:
                return value
        # A plain dict is case-sensitive: otherwise index it by lower-case name once.
        lowered = {str(k).lower(): v for k, v in headers.items()}
        for name in lower_names:
            value = _label(lowered.get(name))
            if value:
                return value
        return None
    for name in names:  # httpx.Headers, CIMultiDict, requests' CaseInsensitiveDict...
        try:
            value = _label(headers.get(name))
        except Exception:
            continue
        if value:
            return value
    return None


def _dig(doc: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(doc) <= index < len(doc):
                return None
            doc = doc[index]
        else:
            return None
    return doc


def _json_doc(body: bytes | str) -> Any:
    if not body or len(body) > MAX_JSON_BYTES:
        return None
    first = body.lstrip()[:1]
    if first not in (b"{", b"[", "{", "["):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError, TypeError):
        return None


def tag(headers: Any, body: bytes | str | None, rules: TagRules = DEFAULT_RULES) -> tuple[str, str]:
    """``(version, tag_source)`` of one response; ``("unknown", "none")`` when nothing matches.

    ``headers`` is any mapping with ``.get`` (case-insensitive ones are used as they are; a
    plain dict is matched case-insensitively); ``body`` the raw body, possibly empty or None.
    """
    value = _header(headers, rules._lower_headers, rules.headers)
    if value:
        return value, "header"
    if body and rules.json_paths:
        doc = _json_doc(body)
        if doc is not None:
            for path in rules.json_paths:
                value = _label(_dig(doc, path))
                if value:
                    return value, "json"
    if body and rules.regex is not None:
        text = body[:MAX_REGEX_BYTES]
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        try:
            match = rules.regex.search(text)
        except Exception:  # catastrophic patterns are the user's; never the request's fault
            match = None
        if match:
            group = (
                "version"
                if "version" in rules.regex.groupindex
                else (1 if rules.regex.groups else 0)
            )
            value = _label(match.group(group))
            if value:
                return value, "regex"
    return UNKNOWN_VERSION, "none"
