"""Unit and property tests for :mod:`nucleus_trio.signals` (pure, no processes).

The one exception is the check of what ``nucleus_trio._entry`` really blocks,
which imports it in a short-lived interpreter.
"""

from __future__ import annotations

import ast
import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus_trio import signals
from nucleus_trio.signals import (
    FORWARDED,
    SIGRTMAX,
    SIGRTMIN,
    STARTUP_BLOCKED,
    SYNCHRONOUS,
    TERMINAL_STOPS,
    UNCATCHABLE,
    SignalSpecError,
    parse_rewrite,
    parse_signal,
    signal_name,
)

VALID: frozenset[int] = frozenset(int(s) for s in signal.valid_signals())
REALTIME: frozenset[int] = frozenset(range(SIGRTMIN, SIGRTMAX + 1))
CLASSIC: frozenset[int] = VALID - REALTIME

#: The canonical names of the classic signals, as the signal module names them.
CLASSIC_NAMES: dict[str, int] = {signal.Signals(n).name: n for n in CLASSIC}

# Located, never imported here: importing it would block signals in pytest itself.
_ENTRY_SPEC = importlib.util.find_spec("nucleus_trio._entry")
assert _ENTRY_SPEC is not None and _ENTRY_SPEC.origin is not None
ENTRY_PY = Path(_ENTRY_SPEC.origin)


def _random_case(text: str, mask: list[bool]) -> str:
    return "".join(
        ch.lower() if mask[i % len(mask)] else ch.upper() for i, ch in enumerate(text)
    )


# ---------------------------------------------------------------- parse_signal


def test_system_has_the_expected_realtime_range() -> None:
    # The tests below assume Linux/glibc: SIGRTMIN 34 .. SIGRTMAX 64, 32/33 reserved.
    assert SIGRTMIN == signal.SIGRTMIN
    assert SIGRTMAX == signal.SIGRTMAX
    assert REALTIME <= VALID
    assert SIGRTMAX - SIGRTMIN >= 8


@pytest.mark.parametrize("name", sorted(CLASSIC_NAMES))
def test_parse_canonical_names_with_and_without_prefix(name: str) -> None:
    number = CLASSIC_NAMES[name]
    assert parse_signal(name) == number
    assert parse_signal(name[3:]) == number
    assert parse_signal(name.lower()) == number
    assert parse_signal(name[3:].lower()) == number
    assert parse_signal(f"  {name}\t") == number


@given(
    name=st.sampled_from(sorted(CLASSIC_NAMES)),
    prefix=st.booleans(),
    mask=st.lists(st.booleans(), min_size=1, max_size=12),
)
def test_parse_names_in_any_case(name: str, prefix: bool, mask: list[bool]) -> None:
    text = name if prefix else name[3:]
    assert parse_signal(_random_case(text, mask)) == CLASSIC_NAMES[name]


@pytest.mark.parametrize(
    ("alias", "number"),
    [("SIGIOT", signal.SIGABRT), ("cld", signal.SIGCHLD), ("Poll", signal.SIGIO)],
)
def test_parse_aliases(alias: str, number: int) -> None:
    assert parse_signal(alias) == number


def test_parse_specific_names() -> None:
    assert parse_signal("TERM") == 15
    assert parse_signal("SIGTERM") == 15
    assert parse_signal("sigterm") == 15
    assert parse_signal("Term") == 15
    assert parse_signal("kill") == 9
    assert parse_signal("HUP") == 1


@pytest.mark.parametrize("number", sorted(VALID))
def test_parse_every_valid_number(number: int) -> None:
    assert parse_signal(str(number)) == number
    assert parse_signal(f" {number} ") == number
    assert parse_signal(f"0{number}") == number


@pytest.mark.parametrize("text", ["0015", "015", "15", " 15\n"])
def test_parse_numbers_with_leading_zeros_and_space(text: str) -> None:
    assert parse_signal(text) == 15


@pytest.mark.parametrize(
    "text",
    ["0", "00", "32", "33", str(SIGRTMAX + 1), "65", "99", "999", "9999", "00015",
     "99999", "1" * 50, "9" * 5000, "-1", "-15", "+15", "1.5", "15.0", "0x0f", "1e1"],
)
def test_parse_rejects_out_of_range_and_odd_numbers(text: str) -> None:
    with pytest.raises(SignalSpecError):
        parse_signal(text)


def test_zero_only_with_allow_zero() -> None:
    with pytest.raises(SignalSpecError):
        parse_signal("0")
    assert parse_signal("0", allow_zero=True) == 0
    assert parse_signal("000", allow_zero=True) == 0
    assert parse_signal(" 0 ", allow_zero=True) == 0
    # allow_zero does not loosen anything else.
    assert parse_signal("TERM", allow_zero=True) == 15
    for bad in ("", "-0", "65", "BOGUS"):
        with pytest.raises(SignalSpecError):
            parse_signal(bad, allow_zero=True)


@pytest.mark.parametrize("text", ["", " ", "\t\n", "   \r "])
def test_parse_empty(text: str) -> None:
    with pytest.raises(SignalSpecError, match="empty"):
        parse_signal(text)


@pytest.mark.parametrize(
    "text",
    ["BOGUS", "SIG", "sig", "SIGSIGTERM", "TERMS", "SIG_IGN", "SIG_DFL", "_IGN", "SIG_BLOCK",
     "NSIG", "SIGNSIG", "TE RM", "SIG TERM", "TERM\0", "\0", "SIGTERM:INT", "TERM,INT",
     "SIGRTMINX", "RTMIN+", "RTMIN-", "RTMIN+x", "RTMIN++1", "RTMIN+ 1", "RTMIN+1.0",
     "RTMIN*2", "RTMAX+", "RTMID", "\u0661\u0665", "\u00b2"],
)
def test_parse_garbage(text: str) -> None:
    with pytest.raises(SignalSpecError):
        parse_signal(text)


def test_signal_spec_error_is_a_value_error_with_the_text() -> None:
    assert issubclass(SignalSpecError, ValueError)
    with pytest.raises(SignalSpecError) as info:
        parse_signal("NOSUCHSIG")
    assert "NOSUCHSIG" in str(info.value)


@pytest.mark.parametrize("offset", range(SIGRTMAX - SIGRTMIN + 1))
def test_parse_realtime_offsets(offset: int) -> None:
    assert parse_signal(f"RTMIN+{offset}") == SIGRTMIN + offset
    assert parse_signal(f"SIGRTMIN+{offset}") == SIGRTMIN + offset
    assert parse_signal(f"sigrtmin+{offset}") == SIGRTMIN + offset
    assert parse_signal(f"RTMAX-{offset}") == SIGRTMAX - offset
    assert parse_signal(f"SigRtMax-{offset}") == SIGRTMAX - offset


def test_parse_realtime_bases() -> None:
    assert parse_signal("RTMIN") == SIGRTMIN
    assert parse_signal("SIGRTMIN") == SIGRTMIN
    assert parse_signal("rtmax") == SIGRTMAX
    assert parse_signal("SIGRTMAX") == SIGRTMAX
    assert parse_signal("RTMIN+003") == SIGRTMIN + 3


@pytest.mark.parametrize(
    "text",
    [
        "RTMIN-1",
        f"RTMIN+{SIGRTMAX - SIGRTMIN + 1}",
        "RTMAX+1",
        f"RTMAX-{SIGRTMAX - SIGRTMIN + 1}",
        "RTMIN+999",
        "RTMIN+1000",
        "RTMIN+" + "9" * 5000,
        "RTMAX-" + "9" * 5000,
    ],
)
def test_parse_realtime_out_of_range(text: str) -> None:
    with pytest.raises(SignalSpecError, match="realtime"):
        parse_signal(text)


@given(st.text(max_size=40), st.booleans())
def test_parse_signal_total(text: str, allow_zero: bool) -> None:
    """Any text is either a valid signal (or 0 when allowed) or a SignalSpecError."""
    try:
        value = parse_signal(text, allow_zero=allow_zero)
    except SignalSpecError as exc:
        assert len(str(exc).splitlines()) == 1
    else:
        assert value in VALID or (allow_zero and value == 0)


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_parse_any_integer(number: int) -> None:
    if number in VALID:
        assert parse_signal(str(number)) == number
    else:
        with pytest.raises(SignalSpecError):
            parse_signal(str(number))


@pytest.mark.parametrize("text", ["\u017figterm", "s\u0131gterm", "\ufb06op", "\u017ftop"])
def test_parse_rejects_non_ascii_lookalikes(text: str) -> None:
    with pytest.raises(SignalSpecError):
        parse_signal(text)


# ----------------------------------------------------------------- signal_name


@pytest.mark.parametrize("number", sorted(CLASSIC))
def test_signal_name_of_classic_signals(number: int) -> None:
    assert signal_name(number) == signal.Signals(number).name


def test_signal_name_prefers_canonical_over_aliases() -> None:
    assert signal_name(signal.SIGABRT) == "SIGABRT"
    assert signal_name(signal.SIGCHLD) == "SIGCHLD"
    assert signal_name(signal.SIGIO) == "SIGIO"
    assert signal_name(15) == "SIGTERM"


@pytest.mark.parametrize("number", sorted(REALTIME))
def test_signal_name_of_realtime_signals(number: int) -> None:
    offset = number - SIGRTMIN
    if number == SIGRTMAX:
        expected = "SIGRTMAX"
    elif offset == 0:
        expected = "SIGRTMIN"
    else:
        expected = f"SIGRTMIN+{offset}"
    assert signal_name(number) == expected


def test_signal_name_examples() -> None:
    assert signal_name(SIGRTMIN + 3) == "SIGRTMIN+3"
    assert signal_name(SIGRTMAX - 1) == f"SIGRTMIN+{SIGRTMAX - 1 - SIGRTMIN}"


@pytest.mark.parametrize("number", [0, 32, 33, SIGRTMAX + 1, 100, -1])
def test_signal_name_of_unnamed_numbers(number: int) -> None:
    assert signal_name(number) == f"SIG{number}"


@pytest.mark.parametrize("number", sorted(VALID))
def test_round_trip(number: int) -> None:
    name = signal_name(number)
    assert name.startswith("SIG")
    assert not name.startswith("SIG_")
    assert parse_signal(name) == number
    assert parse_signal(name.lower()) == number
    assert parse_signal(name[3:]) == number


def test_signal_names_are_distinct() -> None:
    names = [signal_name(n) for n in VALID]
    assert len(set(names)) == len(names)


# ---------------------------------------------------------------- parse_rewrite


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TERM:INT", (15, 2)),
        ("SIGTERM:SIGQUIT", (15, 3)),
        ("15:2", (15, 2)),
        ("usr1:Usr2", (signal.SIGUSR1, signal.SIGUSR2)),
        ("TERM:0", (15, 0)),
        ("SIGTERM:00", (15, 0)),
        (" TERM : INT ", (15, 2)),
        ("TERM:TERM", (15, 15)),
        ("RTMIN+1:RTMAX-1", (SIGRTMIN + 1, SIGRTMAX - 1)),
        ("PIPE:0", (signal.SIGPIPE, 0)),
        # The target may be any signal, even one the init never forwards itself.
        ("TERM:KILL", (15, 9)),
        ("HUP:CHLD", (1, signal.SIGCHLD)),
    ],
)
def test_parse_rewrite(text: str, expected: tuple[int, int]) -> None:
    assert parse_rewrite(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", ":", "TERM", "TERM:", ":INT", " : ", "TERM:INT:QUIT", "TERM::INT", "TERM;INT",
     "TERM:BOGUS", "BOGUS:INT", "0:TERM", "TERM:65", "TERM:-1", "TERM=INT"],
)
def test_parse_rewrite_malformed(text: str) -> None:
    with pytest.raises(SignalSpecError):
        parse_rewrite(text)


@pytest.mark.parametrize(
    "source",
    ["CHLD", "SIGCHLD", "KILL", "STOP", "TTIN", "TTOU", "FPE", "ILL", "SEGV", "BUS",
     "ABRT", "IOT", "TRAP", "SYS", "CLD"],
)
def test_parse_rewrite_of_a_never_forwarded_signal(source: str) -> None:
    with pytest.raises(SignalSpecError, match="never forwards") as info:
        parse_rewrite(f"{source}:TERM")
    assert signal_name(parse_signal(source)) in str(info.value)


@given(st.sampled_from(sorted(FORWARDED)), st.sampled_from([0, *sorted(VALID)]))
def test_every_forwarded_signal_can_be_rewritten(source: int, target: int) -> None:
    assert parse_rewrite(f"{signal_name(source)}:{target}") == (source, target)
    assert parse_rewrite(f"{source}:{signal_name(target) if target else '0'}") == (
        source,
        target,
    )


@given(st.text(max_size=30))
def test_parse_rewrite_total(text: str) -> None:
    try:
        source, target = parse_rewrite(text)
    except SignalSpecError as exc:
        assert len(str(exc).splitlines()) == 1
    else:
        assert source in FORWARDED
        assert target == 0 or target in VALID


def test_rewrite_map_later_rule_wins() -> None:
    from nucleus_trio.config import parse_args

    assert parse_args(["--", "x"])[1].rewrite_map() == {}
    _, config = parse_args(["-r", "TERM:INT", "-r", "HUP:0", "-r", "TERM:QUIT", "--", "x"])
    assert config.rewrite_map() == {15: 3, 1: 0}


# ------------------------------------------------------------------------ sets


@pytest.mark.parametrize(
    "number",
    [signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGTTIN, signal.SIGTTOU,
     signal.SIGFPE, signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT,
     signal.SIGTRAP, signal.SIGSYS],
)
def test_forwarded_excludes(number: int) -> None:
    assert number not in FORWARDED


def test_forwarded_is_exactly_the_rest() -> None:
    excluded = {
        signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGTTIN, signal.SIGTTOU,
        signal.SIGFPE, signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT,
        signal.SIGTRAP, signal.SIGSYS,
    }
    assert VALID - {int(s) for s in excluded} == FORWARDED


def test_forwarded_includes_realtime_pipe_and_the_usual() -> None:
    assert REALTIME <= FORWARDED
    for number in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                   signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH,
                   signal.SIGCONT, signal.SIGTSTP, signal.SIGALRM, signal.SIGXFSZ):
        assert number in FORWARDED, signal_name(number)


def test_the_named_sets() -> None:
    assert {signal.SIGFPE, signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT,
            signal.SIGTRAP, signal.SIGSYS} == SYNCHRONOUS
    assert {signal.SIGTTIN, signal.SIGTTOU} == TERMINAL_STOPS
    assert {signal.SIGKILL, signal.SIGSTOP} == UNCATCHABLE
    assert FORWARDED <= VALID


def test_startup_blocked_composition() -> None:
    assert FORWARDED | TERMINAL_STOPS | {signal.SIGCHLD} == STARTUP_BLOCKED
    assert not STARTUP_BLOCKED & SYNCHRONOUS
    assert not STARTUP_BLOCKED & UNCATCHABLE
    assert signal.SIGCHLD in STARTUP_BLOCKED
    assert REALTIME <= STARTUP_BLOCKED


def _entry_block_call(tree: ast.Module) -> ast.Call:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "pthread_sigmask"
        ):
            return node
    raise AssertionError("no pthread_sigmask call in _entry.py")


def test_startup_blocked_equals_the_expression_in_entry() -> None:
    tree = ast.parse(ENTRY_PY.read_text())
    call = _entry_block_call(tree)
    assert len(call.args) == 2
    how = ast.unparse(call.args[0])
    assert how == "_signal.SIG_BLOCK"
    expression = compile(ast.Expression(call.args[1]), str(ENTRY_PY), "eval")
    import _signal

    blocked = eval(expression, {"_signal": _signal})  # the file's own expression
    assert {int(s) for s in blocked} == STARTUP_BLOCKED


def test_entry_blocks_before_importing_anything_else() -> None:
    tree = ast.parse(ENTRY_PY.read_text())
    call = _entry_block_call(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            assert node.lineno > call.lineno, ast.unparse(node)
        if isinstance(node, ast.Import) and node.lineno < call.lineno:
            assert [alias.name for alias in node.names] == ["_signal"]
    # Nothing but a constant assignment precedes the loop that blocks.
    first = tree.body[0]
    body = tree.body[1:] if isinstance(first, ast.Expr) else tree.body  # docstring
    assert isinstance(body[0], ast.Assign)
    assert isinstance(body[0].value, ast.Constant)
    assert isinstance(body[1], ast.While)
    assert body[1].lineno <= call.lineno <= (body[1].end_lineno or 0)


def test_startup_blocked_equals_what_entry_really_blocks() -> None:
    code = (
        "import signal\n"
        "signal.pthread_sigmask(signal.SIG_SETMASK, [])\n"
        "import nucleus_trio._entry\n"
        "print(' '.join(str(int(s)) for s in "
        "sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    blocked = {int(word) for word in result.stdout.split()}
    assert blocked == STARTUP_BLOCKED


def test_module_imports_only_builtin_signal() -> None:
    # The start-up path must not pay for the ``signal`` module's enum import.
    tree = ast.parse(Path(signals.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= {"_signal", "__future__", "collections.abc"}
