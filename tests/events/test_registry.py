"""The registry of event types: names, lookups, and what a rendered notification may contain."""

from __future__ import annotations

import re

import pytest

from events.builtin import render_notice
from events.registry import (
    BODY_MAX,
    TITLE_MAX,
    URL_MAX,
    DuplicateEventType,
    EventType,
    Rendered,
    UnknownEventType,
    event_type,
    get_event_type,
    register,
    registered_types,
    safe_url,
)
from tests.events.conftest import ThrowawayTypes, render_title_from_data


def test_a_registered_type_is_found_by_its_name(event_types: ThrowawayTypes) -> None:
    registered = event_types.add("invoice.paid")

    assert get_event_type("invoice.paid") is registered
    assert registered in registered_types()


def test_the_decorator_registers_the_function_as_renderer_and_its_docstring_as_description(
    event_types: ThrowawayTypes,
) -> None:
    event_types.forget_after_test("invoice.overdue")

    @event_type("invoice.overdue")
    def render_overdue(event, user):  # type: ignore[no-untyped-def]
        """An invoice was not paid in time."""
        return Rendered(title="overdue")

    found = get_event_type("invoice.overdue")
    assert found.render is render_overdue
    assert found.description == "An invoice was not paid in time."


def test_registering_the_very_same_type_again_is_harmless(event_types: ThrowawayTypes) -> None:
    first = event_types.add("invoice.paid")

    assert register(EventType(name="invoice.paid", render=render_title_from_data)) == first
    assert get_event_type("invoice.paid") == first


def test_a_second_type_with_a_taken_name_is_refused_and_the_first_stays(event_types: ThrowawayTypes) -> None:
    first = event_types.add("invoice.paid")

    with pytest.raises(DuplicateEventType, match=re.escape("'invoice.paid' is already registered")):
        register(EventType(name="invoice.paid", render=lambda event, user: Rendered(title="impostor")))

    assert get_event_type("invoice.paid") is first


def test_a_builtin_type_cannot_be_replaced() -> None:
    with pytest.raises(DuplicateEventType):
        register(EventType(name="notice", render=lambda event, user: Rendered(title="hijacked")))

    assert get_event_type("notice").render is render_notice


@pytest.mark.parametrize(
    "name",
    [
        "Invoice.Paid",
        "invoice paid",
        "invoice-paid",
        "invoice..paid",
        ".invoice",
        "invoice.",
        "1invoice",
        "",
        "ïnvoice",
    ],
)
def test_a_name_that_is_not_dotted_lowercase_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must be dotted lowercase"):
        register(EventType(name=name, render=render_title_from_data))

    with pytest.raises(UnknownEventType):
        get_event_type(name)


@pytest.mark.parametrize("name", ["invoice", "invoice.paid", "billing.invoice_paid2.late"])
def test_dotted_lowercase_names_are_accepted(name: str, event_types: ThrowawayTypes) -> None:
    assert event_types.add(name).name == name


def test_an_unknown_type_error_names_the_type_and_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownEventType) as raised:
        get_event_type("comment.created")

    message = str(raised.value)
    assert message.startswith("unknown event type 'comment.created' (registered: ")
    for known in ("auth.new_sign_in", "message.received", "notice"):
        assert known in message
    assert raised.value.name == "comment.created"
    assert isinstance(raised.value, LookupError)


def test_registered_types_are_listed_by_name(event_types: ThrowawayTypes) -> None:
    event_types.add("zzz.last")
    event_types.add("aaa.first")

    names = [registered.name for registered in registered_types()]

    assert names == sorted(names)
    assert {"aaa.first", "zzz.last", "notice"} <= set(names)


def test_cleaned_trims_title_and_body_to_the_stored_sizes() -> None:
    cleaned = Rendered(title="t" * (TITLE_MAX + 50), body="b" * (BODY_MAX + 50), url="/inbox").cleaned()

    assert cleaned == Rendered(title="t" * TITLE_MAX, body="b" * BODY_MAX, url="/inbox")


def test_cleaned_keeps_what_fits_unchanged() -> None:
    rendered = Rendered(title="<img src=x onerror=alert(1)>", body="</script>", url="https://example.com/a?b=c")

    assert rendered.cleaned() == rendered


def test_cleaned_drops_an_unsafe_url() -> None:
    assert Rendered(title="t", url="javascript:alert(1)").cleaned().url == ""


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "  JAVASCRIPT:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.com",
        "//evil.com/path",
        "/\\evil.com",
        "\\\\evil.com",
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "http:evil.com",
        "inbox/relative-without-slash",
        "/" + "a" * URL_MAX,
    ],
)
def test_safe_url_refuses_anything_but_http_and_site_relative(url: str) -> None:
    assert safe_url(url) == ""


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("/inbox", "/inbox"),
        ("/#messages", "/#messages"),
        ("  /inbox?x=1  ", "/inbox?x=1"),
        ("https://example.com/a", "https://example.com/a"),
        ("HTTP://Example.com/", "HTTP://Example.com/"),
        ("", ""),
    ],
)
def test_safe_url_keeps_http_and_site_relative_urls(url: str, kept: str) -> None:
    assert safe_url(url) == kept


@pytest.mark.parametrize(
    "url", ["/.//evil.com", "/..//evil.com", "/%2e//evil.com", "/%2E%2e//evil.com", "/a/../..//evil.com", "/./x"]
)
def test_safe_url_refuses_paths_whose_dot_segments_a_browser_would_resolve(url: str) -> None:
    assert safe_url(url) == ""


@pytest.mark.parametrize("url", ["/\t/evil.com", "/\n/evil.com", "/\r\n/evil.com"])
def test_safe_url_refuses_protocol_relative_urls_hidden_by_whitespace(url: str) -> None:
    assert safe_url(url) == ""
