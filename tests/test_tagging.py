"""Tagging: ordered rules, tolerant of any response, never raising."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.errors import ConfigError
from probes.tagging import DEFAULT_RULES, TagRules, tag


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"X-Proton-Version": "v2"}, b"", ("v2", "header")),
        ({"x-proton-version": " v2 "}, b"", ("v2", "header")),
        ({"X-Version": "7"}, b'{"version": "9"}', ("7", "header")),
        ({}, b'{"version": "9"}', ("9", "json")),
        ({}, b'  \n{"model_version": 3}', ("3", "json")),
        ({}, b'{"version": true}', ("unknown", "none")),
        ({}, b'{"version": {"a": 1}}', ("unknown", "none")),
        ({}, b'{"version": ""}', ("unknown", "none")),
        ({}, b"[1, 2]", ("unknown", "none")),
        ({}, b"not json", ("unknown", "none")),
        ({}, b"{broken", ("unknown", "none")),
        ({}, b"", ("unknown", "none")),
        ({}, None, ("unknown", "none")),
        (None, None, ("unknown", "none")),
        (httpx.Headers({"X-PROTON-VERSION": "v3"}), None, ("v3", "header")),
    ],
)
def test_default_rules(headers, body, expected):
    assert tag(headers, body) == expected


def test_rule_order_and_custom_paths():
    rules = TagRules.build(["X-Build"], ["meta.v", "choices.0.model"], r"build-(\w+)")
    assert tag({"X-Build": "b1", "X-Version": "no"}, b"", rules) == ("b1", "header")
    assert tag({"X-Version": "ignored"}, b'{"meta": {"v": 4}}', rules) == ("4", "json")
    assert tag({}, b'{"choices": [{"model": "m-2"}]}', rules) == ("m-2", "json")
    assert tag({}, b'{"choices": []}', rules) == ("unknown", "none")
    assert tag({}, b"<html>build-abc</html>", rules) == ("abc", "regex")


def test_named_regex_group_and_huge_body():
    rules = TagRules.build(regex=r"v=(?P<pre>x)?(?P<version>\d+)")
    assert tag({}, b"v=12", rules) == ("12", "regex")
    huge = b'{"version": "big", "pad": "' + b"x" * (2 << 20) + b'"}'
    assert tag({}, huge) == ("unknown", "none")


def test_long_labels_are_cut():
    version, source = tag({"X-Version": "v" * 1000}, None)
    assert source == "header" and len(version) == 128


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"headers": ["bad header"]}, "--tag-header"),
        ({"json_paths": ["a..b"]}, "--tag-json"),
        ({"regex": "("}, "--tag-regex"),
        ({"regex": "(a)(b)"}, "--tag-regex"),
    ],
)
def test_bad_rules_name_the_flag(kwargs, flag):
    from probes.settings import FLAGS

    with pytest.raises(ConfigError, match=flag):
        TagRules.build(**kwargs, place=FLAGS)


def test_rules_round_trip_through_manifest():
    rules = TagRules.build(["X-A"], ["a.b"], r"(\d+)")
    again = TagRules.from_description(rules.describe())
    assert again.describe() == rules.describe()


header_values = st.text(max_size=50) | st.integers() | st.none() | st.binary(max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(st.text(max_size=20), header_values, max_size=5) | st.none(),
    body=st.binary(max_size=512) | st.text(max_size=512) | st.none(),
)
def test_tagging_never_raises_on_anything(headers, body):
    version, source = tag(headers, body, TagRules.build(["X-A"], ["a.0.b"], r"(\w+)"))
    assert isinstance(version, str) and version
    assert source in ("header", "json", "regex", "none")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(doc=json_values)
def test_tagging_never_raises_on_any_json(doc):
    import json

    version, source = tag({}, json.dumps(doc).encode(), DEFAULT_RULES)
    assert source in ("json", "none")
    if isinstance(doc, dict) and isinstance(doc.get("version"), str) and doc["version"].strip():
        assert (version, source) == (doc["version"].strip()[:128], "json")
