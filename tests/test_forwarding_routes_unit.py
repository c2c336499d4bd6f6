"""Tests for :mod:`nucleus_trio.forwarding`: what a received signal becomes."""

from __future__ import annotations

import signal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus_trio.config import parse_args
from nucleus_trio.forwarding import SignalRoute, route_signal
from nucleus_trio.signals import (
    FORWARDED,
    SIGRTMIN,
    parse_rewrite,
    signal_name,
)

VALID = sorted(int(s) for s in signal.valid_signals())
SOURCES = st.sampled_from(sorted(FORWARDED))
TARGETS = st.sampled_from([0, *VALID])
TABLES = st.dictionaries(SOURCES, TARGETS, max_size=12)


def test_no_rewrite() -> None:
    route = route_signal(signal.SIGTERM, {})
    assert route == SignalRoute(15, 15)
    assert not route.dropped
    assert not route.rewritten
    assert route.describe() == "SIGTERM"


def test_rewritten() -> None:
    route = route_signal(signal.SIGTERM, {15: signal.SIGQUIT})
    assert route.received == 15
    assert route.signo == signal.SIGQUIT
    assert route.rewritten
    assert not route.dropped
    assert route.describe() == "SIGQUIT (rewritten from SIGTERM)"


def test_dropped() -> None:
    route = route_signal(signal.SIGHUP, {1: 0})
    assert route.dropped
    assert route.signo == 0
    assert route.describe() == "SIGHUP (dropped by a rewrite)"


def test_identity_rewrite_is_not_a_rewrite() -> None:
    route = route_signal(15, {15: 15})
    assert not route.rewritten
    assert route.describe() == "SIGTERM"


def test_other_signals_are_untouched_by_the_table() -> None:
    table = {15: 3, 1: 0}
    assert route_signal(2, table) == SignalRoute(2, 2)
    assert route_signal(SIGRTMIN + 3, table).describe() == "SIGRTMIN+3"


def test_realtime_names_in_describe() -> None:
    route = route_signal(SIGRTMIN + 1, {SIGRTMIN + 1: SIGRTMIN + 3})
    assert route.describe() == "SIGRTMIN+3 (rewritten from SIGRTMIN+1)"
    assert route_signal(SIGRTMIN, {SIGRTMIN: 0}).describe() == "SIGRTMIN (dropped by a rewrite)"


def test_route_is_frozen_and_hashable() -> None:
    route = SignalRoute(15, 3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        route.signo = 0  # type: ignore[misc]
    assert route == SignalRoute(15, 3)
    assert hash(route) == hash(SignalRoute(15, 3))
    assert route != SignalRoute(3, 15)


def test_route_from_the_command_line() -> None:
    _, config = parse_args(["-r", "TERM:QUIT", "-r", "HUP:0", "-r", "TERM:INT", "cmd"])
    table = config.rewrite_map()
    assert route_signal(15, table) == SignalRoute(15, 2)
    assert route_signal(1, table).dropped
    assert route_signal(3, table) == SignalRoute(3, 3)


@given(st.sampled_from(VALID), TABLES)
def test_route_properties(received: int, table: dict[int, int]) -> None:
    route = route_signal(received, table)
    assert route.received == received
    assert route.signo == table.get(received, received)
    assert route.dropped is (route.signo == 0)
    assert route.rewritten is (route.signo != received)
    if received not in table:
        assert not route.rewritten
        assert not route.dropped
    text = route.describe()
    assert "\n" not in text
    if route.dropped:
        assert text == f"{signal_name(received)} (dropped by a rewrite)"
    elif route.rewritten:
        assert text == f"{signal_name(route.signo)} (rewritten from {signal_name(received)})"
    else:
        assert text == signal_name(received)


@given(st.lists(st.tuples(SOURCES, TARGETS), max_size=10), st.sampled_from(sorted(FORWARDED)))
def test_route_through_parsed_rules(rules: list[tuple[int, int]], received: int) -> None:
    """Rules written as text, parsed, tabled and routed: the last rule for a signal wins."""
    texts = [f"{signal_name(src)}:{signal_name(dst) if dst else '0'}" for src, dst in rules]
    parsed = [parse_rewrite(text) for text in texts]
    assert parsed == rules
    table = dict(parsed)  # as Config.rewrite_map: a later rule wins
    expected = received
    for src, dst in rules:
        if src == received:
            expected = dst
    assert route_signal(received, table).signo == expected


@given(TABLES)
def test_routing_does_not_change_the_table(table: dict[int, int]) -> None:
    before = dict(table)
    for signo in VALID:
        route_signal(signo, table)
    assert table == before
