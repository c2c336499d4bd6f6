"""Signal names, numbers and the rules for what the init forwards.

Pure functions only. This module runs before the workload is spawned, so it
imports nothing but ``_signal`` (the ``signal`` module costs an ``enum`` import,
about 5 ms, on the start-up path).
"""

import _signal

SIGRTMIN: int = _signal.SIGRTMIN
SIGRTMAX: int = _signal.SIGRTMAX

#: Signals that only the init's own faults raise: never forwarded, never blocked
#: (blocking them would leave a real fault pending instead of killing the init).
SYNCHRONOUS: frozenset[int] = frozenset(
    {
        _signal.SIGFPE,
        _signal.SIGILL,
        _signal.SIGSEGV,
        _signal.SIGBUS,
        _signal.SIGABRT,
        _signal.SIGTRAP,
        _signal.SIGSYS,
    }
)

#: Signals the init ignores itself, as tini does, so a background init never
#: stops on terminal I/O; the workload gets the terminal instead.
TERMINAL_STOPS: frozenset[int] = frozenset({_signal.SIGTTIN, _signal.SIGTTOU})

UNCATCHABLE: frozenset[int] = frozenset({_signal.SIGKILL, _signal.SIGSTOP})

#: Every signal the init forwards to the workload.
FORWARDED: frozenset[int] = frozenset(
    _signal.valid_signals() - UNCATCHABLE - SYNCHRONOUS - TERMINAL_STOPS - {_signal.SIGCHLD}
)

#: What the first line of the entry point blocks: the forwarded signals, so none
#: is lost before trio's receiver is up, and SIGCHLD, so no exit is missed.
#: TTIN/TTOU are blocked too until they are set to SIG_IGN.
STARTUP_BLOCKED: frozenset[int] = FORWARDED | TERMINAL_STOPS | {_signal.SIGCHLD}

_NAMES: dict[str, int] = {
    name: value
    for name, value in vars(_signal).items()
    if name.startswith("SIG")
    and not name.startswith("SIG_")
    and name not in ("SIGRTMIN", "SIGRTMAX")
    and isinstance(value, int)
}

# Aliases (SIGIOT = SIGABRT, SIGCLD = SIGCHLD, SIGPOLL = SIGIO) must not win
# over the canonical name when printing.
_CANONICAL_SKIP = frozenset({"SIGIOT", "SIGCLD", "SIGPOLL"})
_BY_NUMBER: dict[int, str] = {}
for _name, _value in sorted(_NAMES.items()):
    if _name not in _CANONICAL_SKIP:
        _BY_NUMBER.setdefault(_value, _name)
del _name, _value


class SignalSpecError(ValueError):
    """A signal name or number that does not denote a signal of this system."""


def signal_name(signo: int) -> str:
    """Return the conventional name of ``signo``: ``SIGTERM``, ``SIGRTMIN+3``.

    Numbers without a name come back as ``SIG<n>``.
    """
    name = _BY_NUMBER.get(signo)
    if name is not None:
        return name
    if SIGRTMIN <= signo <= SIGRTMAX:
        if signo == SIGRTMAX:
            return "SIGRTMAX"
        offset = signo - SIGRTMIN
        return "SIGRTMIN" if offset == 0 else f"SIGRTMIN+{offset}"
    return f"SIG{signo}"


def parse_signal(text: str, *, allow_zero: bool = False) -> int:
    """Parse a signal given by name or number.

    Accepts ``TERM``, ``SIGTERM``, ``sigterm``, ``15``, ``RTMIN+3``,
    ``SIGRTMAX-1``. ``0`` is accepted only with ``allow_zero`` (the "drop" of a
    rewrite). Raises :class:`~nucleus_trio.signals.SignalSpecError` with a message fit for a user.
    """
    spec = text.strip()
    if not spec:
        raise SignalSpecError("empty signal name")
    if spec.isdigit() and spec.isascii():
        # Leading zeros and huge values are still plain numbers; bound them.
        if len(spec) > 4:
            raise SignalSpecError(f"signal number out of range: {text!r}")
        number = int(spec)
        if number == 0 and allow_zero:
            return 0
        if number in _signal.valid_signals():
            return number
        raise SignalSpecError(f"not a valid signal number: {text!r}")
    if not spec.isascii():
        raise SignalSpecError(f"unknown signal: {text!r}")
    upper = spec.upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    named = _NAMES.get(upper)
    if named is not None:
        return named
    for base_name, base in (("SIGRTMIN", SIGRTMIN), ("SIGRTMAX", SIGRTMAX)):
        if not upper.startswith(base_name):
            continue
        rest = upper[len(base_name) :]
        if rest == "":
            return base
        sign, digits = rest[0], rest[1:]
        if sign in "+-" and digits.isdigit() and digits.isascii() and len(digits) <= 3:
            value = base + int(digits) if sign == "+" else base - int(digits)
            if SIGRTMIN <= value <= SIGRTMAX:
                return value
        raise SignalSpecError(f"realtime signal out of range: {text!r}")
    raise SignalSpecError(f"unknown signal: {text!r}")


def parse_rewrite(text: str) -> tuple[int, int]:
    """Parse one ``FROM:TO`` rewrite rule; ``TO`` of 0 means drop."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise SignalSpecError(f"rewrite must be FROM:TO, got {text!r}")
    source = parse_signal(parts[0])
    target = parse_signal(parts[1], allow_zero=True)
    if source not in FORWARDED:
        raise SignalSpecError(f"cannot rewrite {signal_name(source)}: the init never forwards it")
    return source, target
