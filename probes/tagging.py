"""Version tagging: which proton answered, read from the response itself.

Rules are tried in order: response headers, then JSON body fields (dotted paths, list
indexes allowed: ``choices.0.model``), then an optional regex over the body text. The first
rule that yields a value wins. Tagging never raises: malformed, empty, binary or huge bodies
simply do not match, and the result is ``("unknown", "none")``.

The regex is the user's, and tagging runs on the probe's event loop (and in every Locust
user): a backtracking engine would let ``(a+)+$`` stall the schedule for seconds on one
body. So it is compiled with RE2 (``google-re2``), whose matching time is linear in the
input, on at most ``MAX_REGEX_BYTES`` of the body. RE2 takes Python's syntax for what a
version regex needs (groups, ``(?P<name>...)``, classes, ``(?i)``) with the same group
semantics; what needs backtracking (backreferences, lookaround) is refused at the flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import re2

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


class Regex(Protocol):
    """What tagging uses of a compiled pattern (an RE2 one: ``compile_regex``)."""

    @property
    def pattern(self) -> str: ...
    @property
    def groups(self) -> int: ...
    @property
    def groupindex(self) -> Mapping[str, int]: ...
    def search(self, text: str) -> Any: ...


def compile_regex(pattern: str) -> Regex:
    """``pattern`` compiled with RE2 (linear-time matching); ``ValueError`` with RE2's reason
    when it is not a regular expression RE2 takes."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own line on stderr
    try:
        compiled: Regex = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None
    return compiled


@dataclass(frozen=True)
class TagRules:
    """Ordered tagging rules; build with ``TagRules.build`` to validate user input."""

    headers: tuple[str, ...] = DEFAULT_HEADERS
    json_paths: tuple[tuple[str, ...], ...] = tuple(tuple(p.split(".")) for p in DEFAULT_JSON_PATHS)
    regex: Regex | None = None
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
                pattern = compile_regex(regex)
            except ValueError as exc:
                raise ConfigError(
                    f"{place('tag_regex')}: {regex!r} is not a regular expression RE2 takes:"
                    f" {exc} (no backreferences or lookaround)"
                ) from None
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
            match = rules.regex.search(text)  # RE2: linear in len(text), never a stall
        except Exception:  # a pattern's failure is the user's; never the request's fault
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
