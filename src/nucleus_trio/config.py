"""The command line: one table of options (:data:`OPTIONS`), and the parser,
the ``-h`` text and the immutable :class:`Config` that follow from it.

Pure and standard-library only: it runs before the workload is spawned, where
``argparse`` (10 ms), ``attrs`` (45 ms) or ``re`` (8 ms) would delay the
workload's start. Options end at ``--`` or at the first word that is not an
option, so ``nucleus-trio cmd -g`` passes ``-g`` to ``cmd``.

A new flag is one new row of :data:`OPTIONS` (with a parser function if its
value is of a new kind) and, when it sets a new field, that field's type among
:class:`Config`'s annotations, which is all mypy needs.
"""

from nucleus_trio.environment import EnvError, check_env_assignments, parse_env_assignment
from nucleus_trio.signals import SignalSpecError, parse_rewrite, parse_signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from nucleus_trio.identity import Identity

PROG = "nucleus-trio"

USAGE = f"usage: {PROG} [OPTIONS] [--] PROGRAM [ARGS...]   (or {PROG} -P [OPTIONS])"

#: Seconds between SIGTERM and SIGKILL for the processes left behind.
DEFAULT_GRACE = 3.0

#: The largest number of seconds accepted, so a typo cannot mean "forever".
MAX_SECONDS = 10_000_000.0

#: The most logging (debug); the default is 1 (warnings).
MAX_VERBOSITY = 3

#: What every option's own environment variable starts with.
VARIABLE_PREFIX = "NUCLEUS_TRIO_"


class UsageError(Exception):
    """A command line that cannot be run; the message is one line for the user."""


class Action:
    """What the command line asks for besides running: help or version."""

    RUN = "run"
    HELP = "help"
    VERSION = "version"


# The kinds of option, the third column of OPTIONS: how a row changes its
# field. Plain strings, as ``enum`` would cost an import.

#: No value: set the field to the row's ``const``: ``True``, ``False`` for a
#: negating switch (``--no-subreaper``, ``-c``), ``0`` for ``-q``.
SWITCH = "switch"
#: No value: add one to the field (``-vvv``).
COUNT = "count"
#: One value, through the row's parser; the last one given wins.
VALUE = "value"
#: One value, through the row's parser, any number of times: :class:`Config`
#: keeps them all in a collection of the default's type (a tuple keeps their
#: order, a frozenset does not).
REPEAT = "repeat"
#: No value: stop parsing, and ask for the row's ``const`` (an :class:`Action`).
ACTION = "action"


def environment_variable(long: str) -> str:
    """The environment variable that stands for the long flag ``long``.

    ``--kill-after`` gives ``NUCLEUS_TRIO_KILL_AFTER`` (see
    :func:`_apply_own_environment`).
    """
    return VARIABLE_PREFIX + long.lstrip("-").upper().replace("-", "_")


class Option:
    """One row of :data:`OPTIONS`: a flag, what it does to which field, its help.

    The columns: ``short`` (``"-s"``, or ``""``) and ``long`` spellings;
    ``kind`` (:data:`SWITCH`, :data:`COUNT`, :data:`VALUE`, :data:`REPEAT`,
    :data:`ACTION`); ``field``, the :class:`Config` attribute it sets (``""``
    for an action), and that field's ``default``; then, by keyword, the
    ``metavar`` and ``parse`` function of an option that takes a value, the
    ``const`` a switch stores or an action asks for, and ``help``, the text
    of its ``-h`` entry with a newline where it must wrap. With ``in_config``
    false the field only lives during the parse (the user and the groups,
    which end as ``Config.identity``). Rows are shared by every parse: treat
    them as read-only.
    """

    __slots__ = (
        "const",
        "default",
        "field",
        "help",
        "in_config",
        "kind",
        "long",
        "metavar",
        "parse",
        "separator",
        "short",
        "takes_value",
    )

    def __init__(
        self,
        short: str,
        long: str,
        kind: str,
        field: str,
        default: object,
        *,
        help: str,
        metavar: str = "",
        parse: "Callable[[str], object] | None" = None,
        const: object = True,
        in_config: bool = True,
        separator: str = ",",
    ) -> None:
        self.short = short  # "" when the option has no short form
        self.long = long
        self.kind = kind
        self.field = field
        self.default = default
        self.help = help
        self.metavar = metavar
        self.parse = parse
        self.const = const
        self.in_config = in_config
        self.separator = separator
        self.takes_value = kind in (VALUE, REPEAT)
        # A mistake in the table, not in a command line: stop the import.
        if (parse is not None) is not self.takes_value:
            raise TypeError(f"{long}: a parser goes with a value, and only with one")
        if kind == REPEAT and default not in ((), frozenset()):
            raise TypeError(f"{long}: a repeatable option starts empty")

    @property
    def variable(self) -> str:
        """The environment variable that stands for this option; the values
        of a repeatable one are separated by :attr:`separator`."""
        return environment_variable(self.long)


def _parse_exit_code(text: str) -> int:
    spec = text.strip()
    if not (spec.isdigit() and spec.isascii()) or len(spec) > 3 or int(spec) > 255:
        raise UsageError(f"exit code must be a number from 0 to 255, got {text!r}")
    return int(spec)


def parse_audit_destination(text: str) -> str:
    """Check ``--audit DEST``: ``-``, ``fd:N`` (N >= 1) or a non-empty path."""
    if not text:
        raise UsageError("--audit needs a destination: a path, - or fd:N")
    if text.startswith("fd:"):
        number = text[3:]
        if not (number.isascii() and number.isdigit()) or len(number) > 9 or int(number) < 1:
            raise UsageError(f"--audit fd:N needs a descriptor number of 1 or more, got {text!r}")
    return text


def parse_seconds(text: str) -> float:
    """Parse a duration in seconds: ``5``, ``0.5``; finite and not negative."""
    spec = text.strip()
    try:
        if not spec.isascii() or "_" in spec:
            raise ValueError
        value = float(spec)
    except ValueError:
        raise UsageError(f"expected a number of seconds, got {text!r}") from None
    if not 0.0 <= value <= MAX_SECONDS:  # also false for NaN
        raise UsageError(f"seconds must be between 0 and {MAX_SECONDS:.0f}, got {text!r}")
    return value


def _parse_groups(text: str) -> list[str]:
    """Split ``--groups a,b``; a blank value means no supplementary groups."""
    return [name.strip() for name in text.split(",")] if text.strip() else []


#: Every option, in the order of ``-h``. A parser raises :class:`UsageError`
#: with the whole message; the signal and environment modules' own errors get
#: the flag, as the user spelled it, in front. Rows that share a field (a
#: switch and its negation) give it the same default.
OPTIONS: tuple[Option, ...] = (
    #      short long                kind    field             default
    Option("-s", "--subreaper",      SWITCH, "subreaper",      None,
           help="register as child subreaper (default when not PID 1)"),
    Option("",   "--no-subreaper",   SWITCH, "subreaper",      None, const=False,
           help="do not register as child subreaper"),
    Option("-g", "--pgroup",         SWITCH, "pgroup",         False,
           help="forward signals to the workload's whole process group"),
    Option("-c", "--single-child",   SWITCH, "pgroup",         False, const=False,
           help="forward signals to the workload alone (default)"),
    Option("-r", "--rewrite",        REPEAT, "rewrites",       (),
           metavar="FROM:TO", parse=parse_rewrite,
           help="rewrite a received signal before forwarding it; TO=0\n"
                "drops it; names (TERM, SIGTERM) or numbers; repeatable"),
    Option("-e", "--remap-exit",     REPEAT, "remap_exit",     frozenset(),
           metavar="CODE", parse=_parse_exit_code,
           help="exit 0 when the workload's outcome is CODE (death by\n"
                "signal S counts as 128+S); repeatable"),
    Option("-p", "--pdeathsig",      VALUE,  "pdeathsig",      None,
           metavar="SIGNAL", parse=parse_signal,
           help="have the kernel send SIGNAL to the init when its\n"
                "parent dies"),
    Option("-P", "--pause",          SWITCH, "pause",          False,
           help="run no program: reap orphans, exit 0 on SIGINT/SIGTERM"),
    Option("-t", "--grace",          VALUE,  "grace",          DEFAULT_GRACE,
           metavar="SECONDS", parse=parse_seconds,
           help="when the workload has exited, give the processes left\n"
                "behind this long after SIGTERM before SIGKILL\n"
                f"(default {DEFAULT_GRACE:g}; ends early once they are all gone)"),
    Option("",   "--kill-after",     VALUE,  "kill_after",     None,
           metavar="SECONDS", parse=parse_seconds,
           help="after forwarding SIGTERM or SIGINT, SIGKILL the\n"
                "workload (its group with -g) if it is still alive\n"
                "SECONDS later (default: never)"),
    Option("-w", "--warn-reap",      SWITCH, "warn_reap",      False,
           help="log a warning for every orphan reaped"),
    Option("",   "--audit",          VALUE,  "audit",          None,
           metavar="DEST", parse=parse_audit_destination,
           help="write audit events as JSON lines to DEST: a file\n"
                "(appended, created 0600), - for stderr, or fd:N"),
    Option("",   "--container-id",   VALUE,  "container_id",   None,
           metavar="ID", parse=str,
           help="correlation field of every audit event\n"
                "(default: the hostname)"),
    Option("",   "--container-name", VALUE,  "container_name", None,
           metavar="NAME", parse=str,
           help="correlation field of every audit event\n"
                '(default: PROGRAM\'s base name, or "pause")'),
    Option("",   "--redact-args",    SWITCH, "redact_args",    False,
           help="log only PROGRAM in audit events, not its arguments"),
    Option("",   "--clean-env",      SWITCH, "clean_env",      False,
           help="start the workload from a minimal environment\n"
                "(PATH, TERM=xterm, HOME=/) instead of the inherited one"),
    Option("",   "--env",            REPEAT, "env",            (),
           metavar="KEY=VALUE", parse=parse_env_assignment, separator="\n",
           help="set a variable for the workload; repeatable"),
    Option("",   "--sd-notify",      SWITCH, "sd_notify",      False,
           help="pass NOTIFY_SOCKET through (abstract, or under /run/)"),
    Option("",   "--no-new-privs",   SWITCH, "no_new_privs",   False,
           help="set PR_SET_NO_NEW_PRIVS for the workload"),
    Option("",   "--user",           VALUE,  "user",           None,
           metavar="USER[:GROUP]", parse=str, in_config=False,
           help="run the workload as USER (name or number), with GROUP\n"
                "or else USER's primary group"),
    Option("",   "--groups",         VALUE,  "groups",         None,
           metavar="GROUP[,GROUP...]", parse=_parse_groups, in_config=False,
           help="the workload's supplementary groups (with --user,\n"
                "none unless given)"),
    Option("-v", "--verbose",        COUNT,  "verbosity",      1,
           help="more logging on stderr (repeatable)"),
    Option("-q", "--quiet",          SWITCH, "verbosity",      1, const=0,
           help="less logging on stderr"),
    Option("-V", "--version",        ACTION, "",               None, const=Action.VERSION,
           help="print the version and exit"),
    Option("-h", "--help",           ACTION, "",               None, const=Action.HELP,
           help="print this help and exit"),
)  # fmt: skip


#: Every spelling of every option, short and long, to its row.
_BY_FLAG: dict[str, Option] = {}
#: The long names, sorted: the candidates for a prefix.
_LONG_NAMES: list[str] = []
#: Every field the options set, with its default.
_DEFAULTS: dict[str, object] = {}
#: The keyword arguments of :class:`Config`, with their defaults: the
#: table's fields, but for the parse-only ones, and ``identity``.
_CONFIG_DEFAULTS: dict[str, object] = {"identity": None}
#: The fields that hold a list during the parse, frozen by :class:`Config`.
_REPEATED: set[str] = set()
# The flags that take no value and the flags that take one (the stress
# fuzzer builds its command lines from these two).
_SWITCHES: set[str] = set()
_VALUED: set[str] = set()


def _index(options: "Sequence[Option]") -> None:
    """Fill the lookups above in one pass over the table (it runs at every
    start); rows that share a field must agree on its default."""
    for option in options:
        flags = (option.short, option.long) if option.short else (option.long,)
        for flag in flags:
            _BY_FLAG[flag] = option
        _LONG_NAMES.append(option.long)
        if option.kind == ACTION:
            continue
        (_VALUED if option.takes_value else _SWITCHES).update(flags)
        if _DEFAULTS.setdefault(option.field, option.default) != option.default:
            raise TypeError(f"{option.long}: another row gives {option.field} another default")
        if option.in_config:
            _CONFIG_DEFAULTS[option.field] = option.default
        if option.kind == REPEAT:
            _REPEATED.add(option.field)
    _LONG_NAMES.sort()


_index(OPTIONS)
#: The fields that only live during the parse.
_PARSE_ONLY = _DEFAULTS.keys() - _CONFIG_DEFAULTS.keys()


class Config:
    """Everything the command line decides, validated and immutable.

    The fields and their defaults are those of ``OPTIONS``, plus ``argv``
    (the program and its arguments) and ``identity`` (from ``--user`` and
    ``--groups``). A plain ``__slots__`` class rather than an attrs one: it is
    built before the workload is spawned, where importing attrs would cost
    tens of ms.
    """

    __slots__ = tuple(sorted({"argv", *_CONFIG_DEFAULTS}))

    # The types, for mypy only: the table says which fields exist at run time,
    # and the check after the class keeps the two lists the same.
    argv: tuple[str, ...]
    audit: str | None
    clean_env: bool
    container_id: str | None
    container_name: str | None
    env: tuple[tuple[str, str], ...]
    grace: float
    identity: "Identity | None"
    kill_after: float | None
    no_new_privs: bool
    pause: bool
    pdeathsig: int | None
    pgroup: bool
    redact_args: bool
    remap_exit: frozenset[int]
    rewrites: tuple[tuple[int, int], ...]
    sd_notify: bool
    subreaper: bool | None
    verbosity: int
    warn_reap: bool

    def __init__(self, argv: "Sequence[str]" = (), **fields: "Any") -> None:
        unknown = fields.keys() - _CONFIG_DEFAULTS.keys()
        if unknown:
            raise TypeError(f"Config() got unexpected keyword arguments: {sorted(unknown)}")
        object.__setattr__(self, "argv", tuple(argv))
        for name, default in _CONFIG_DEFAULTS.items():
            value = fields.get(name, default)
            if name in _REPEATED:  # copied, so the caller's list cannot change it
                value = frozenset(value) if isinstance(default, frozenset) else tuple(value)
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable (tried to set {name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Config is immutable (tried to delete {name})")

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Config({fields})"

    def wants_subreaper(self, is_pid1: bool) -> bool:
        """Whether to register as child subreaper: on by default unless PID 1."""
        if self.subreaper is None:
            return not is_pid1
        return self.subreaper

    def rewrite_map(self) -> dict[int, int]:
        """The rewrite rules as a table; a later rule for a signal wins."""
        return dict(self.rewrites)

    def shown_argv(self) -> list[str]:
        """argv as the audit shows it: in full, or PROGRAM alone with --redact-args."""
        if self.redact_args and len(self.argv) > 1:
            return [self.argv[0], f"<{len(self.argv) - 1} arguments redacted>"]
        return list(self.argv)


# A row without its annotation above would be a field mypy does not know of
# (an annotation without a row, one that never exists): stop the import.
if set(Config.__annotations__) != set(Config.__slots__):
    raise TypeError(
        "Config's annotations and OPTIONS disagree on: "
        f"{sorted(set(Config.__annotations__) ^ set(Config.__slots__))}"
    )


# ----------------------------------------------------------------------- -h

#: Where the help column starts; longer flags put their help on the next line.
_HELP_COLUMN = 27
_HELP_BREAK = "\n" + " " * _HELP_COLUMN


def _help_entry(option: Option) -> str:
    """An option's lines in ``-h``: its flags and value name, then its help."""
    head = f"  {option.short}, {option.long}" if option.short else f"      {option.long}"
    if option.metavar:
        head = f"{head} {option.metavar}"
    text = option.help.replace("\n", _HELP_BREAK)
    if len(head) < _HELP_COLUMN:
        return head.ljust(_HELP_COLUMN) + text
    return head + _HELP_BREAK + text


def help_text() -> str:
    """The text of ``-h``, built from :data:`OPTIONS` when asked for (not at
    import: the start-up path has no use for it). Also as ``config.HELP``."""
    options_help = "\n".join([_help_entry(option) for option in OPTIONS])
    return f"""{USAGE}

Run PROGRAM as the workload of an init: forward signals to it, reap orphaned
zombies, and exit with its status (128+S when a signal S killed it).

options:
{options_help}

environment (for where no flag can be given: docker's or podman's --init):
  NUCLEUS_TRIO_<OPTION>    every option but -h and -V, by its long name in upper
                           snake case: NUCLEUS_TRIO_GRACE=1, NUCLEUS_TRIO_PGROUP=1
                           (1 or 0), NUCLEUS_TRIO_VERBOSE=2 (a count),
                           NUCLEUS_TRIO_REWRITE=HUP:TERM,USR1:0 (comma-separated;
                           NUCLEUS_TRIO_ENV: one KEY=VALUE per line); a flag wins
  the peers' variables, so an image keeps its settings (the above win over them):
  TINI_SUBREAPER           set (to anything): as -s
  TINI_KILL_PROCESS_GROUP  set (to anything): as -g
  TINI_VERBOSITY=N         logging level 0-{MAX_VERBOSITY} (1 is the default, 3 the most)
  DUMB_INIT_DEBUG=1, CATATONIT_DEBUG
                           the most logging, as TINI_VERBOSITY=3

exit status: the workload's; 126/127 when PROGRAM cannot be run; 2 on bad usage.
"""


def __getattr__(name: str) -> str:
    if name == "HELP":
        return help_text()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------- the peers' variables

#: The peers' environment variables that :func:`parse_args` reads.
PEER_VARIABLES = (
    "TINI_SUBREAPER",
    "TINI_KILL_PROCESS_GROUP",
    "TINI_VERBOSITY",
    "DUMB_INIT_DEBUG",
    "CATATONIT_DEBUG",
)


def _apply_peer_environment(values: dict[str, object], environ: "Mapping[str, str]") -> None:
    """Defaults from the environment variables of tini, dumb-init and
    catatonit, applied before the flags so that a flag wins.

    An image that set them for a peer keeps its behaviour after the switch.
    tini's switches are presence tests, as in tini (``TINI_SUBREAPER=0``
    turns it on); ``TINI_VERBOSITY`` counts as tini's levels do. dumb-init's
    ``DUMB_INIT_SETSID=0`` asks for what is already the default here (signals
    to the workload alone), so it needs nothing.
    """
    if "TINI_SUBREAPER" in environ:
        values["subreaper"] = True
    if "TINI_KILL_PROCESS_GROUP" in environ:
        values["pgroup"] = True
    if environ.get("DUMB_INIT_DEBUG") == "1" or "CATATONIT_DEBUG" in environ:
        values["verbosity"] = MAX_VERBOSITY
    text = environ.get("TINI_VERBOSITY")
    if text is not None:
        try:
            level = int(text.strip(), 10)
        except ValueError:
            raise UsageError(
                f"TINI_VERBOSITY must be a whole number (0-{MAX_VERBOSITY}), not {text!r}"
            ) from None
        values["verbosity"] = min(max(level, 0), MAX_VERBOSITY)


#: What a switch's variable may say: on, or off (the default stays).
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _apply_own_environment(values: dict[str, object], environ: "Mapping[str, str]") -> set[str]:
    """The environment form of every option (README, "Command line"): a
    switch's variable is on or off (``1``/``0``, ``true``/``false``, ...), a
    counter's is a count (``NUCLEUS_TRIO_VERBOSE=2`` is ``-vv``), a value's is
    the value, a repeatable option's its values separated by the row's
    separator (a comma; a newline for ``--env``). Applied after the peers'
    variables and before the flags; returns the fields it set, which a flag
    for the same field then sets afresh. A bad value names the variable."""
    set_by: dict[str, str] = {}
    for option in OPTIONS:
        name = option.variable
        text = environ.get(name)
        if text is None or option.kind == ACTION:
            continue
        if option.kind == SWITCH:
            word = text.strip().lower()
            if word in _FALSE:
                continue
            if word not in _TRUE:
                raise UsageError(f"{name} must be 1 or 0 (true or false), not {text!r}")
            if set_by.get(option.field, name) != name and values[option.field] != option.const:
                raise UsageError(f"{set_by[option.field]} and {name} contradict each other")
            values[option.field] = option.const
        elif option.kind == COUNT:
            count = text.strip()
            if not (count.isascii() and count.isdigit()) or len(count) > 3:
                raise UsageError(f"{name} must be a count (0, 1, 2, ...), not {text!r}")
            default = option.default
            assert isinstance(default, int)
            values[option.field] = min(default + int(count), MAX_VERBOSITY)
        else:
            _apply_value(option, name, text, values)
        set_by[option.field] = name
    return set(set_by)


def keyword(option: Option) -> str:
    """The keyword that stands for ``option`` in the library (``--kill-after``
    is ``kill_after``), as in :func:`flags_for`."""
    return option.long[2:].replace("-", "_")


def _count(value: object) -> int:
    if not isinstance(value, int) or value < 0:
        raise UsageError(f"a count must be a number from 0 up, got {value!r}")
    return value


def _items(value: object) -> list[str]:
    """The values of a repeatable option: one text, an iterable of them, or
    a mapping (``env={"KEY": "VALUE"}``)."""
    if isinstance(value, str):
        return [value]
    mapping = getattr(value, "items", None)
    if callable(mapping):
        return [f"{key}={item}" for key, item in mapping()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(item) for item in value]
    raise UsageError(f"expected a text or a list of them, got {value!r}")


def flags_for(options: "Mapping[str, object]") -> list[str]:
    """The command line's flags for options given as keywords (README,
    "Sandboxes"): a switch is ``True`` or ``False``, ``verbose`` a count, a
    repeatable option any iterable (``env`` also a mapping), any other value
    its text. The result is checked as the command line would check it;
    raises :class:`UsageError` for an unknown keyword or a bad value.
    """
    by_keyword = {
        keyword(option): option
        for option in OPTIONS
        if option.kind != ACTION and option.long != "--audit"
    }
    flags: list[str] = []
    for name, value in options.items():
        option = by_keyword.get(name)
        if option is None:
            raise UsageError(f"no option {name!r} (the keywords are: {', '.join(by_keyword)})")
        if option.kind == SWITCH:
            flags += [option.long] if value else []
        elif option.kind == COUNT:
            flags += [option.long] * _count(value)
        elif option.kind == REPEAT:
            flags += [word for item in _items(value) for word in (option.long, item)]
        elif value is not None:
            joined = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else None
            flags += [option.long, str(value) if joined is None else joined]
    parse_args([*flags, "--", "true"])
    return flags


def _apply_value(option: Option, name: str, text: str, values: dict[str, object]) -> None:
    """A value's variable (its errors name ``name``)."""
    assert option.parse is not None
    items = [text] if option.kind == VALUE else [i for i in text.split(option.separator) if i]
    parsed = []
    for item in items:
        try:
            parsed.append(option.parse(item))
        except (SignalSpecError, EnvError, UsageError) as exc:
            raise UsageError(f"{name}: {exc}") from None
    values[option.field] = parsed[0] if option.kind == VALUE else parsed


# ------------------------------------------------------------------ the parser


def parse_args(
    args: "Sequence[str]", environ: "Mapping[str, str] | None" = None
) -> tuple[str, Config]:
    """Parse the init's arguments (without ``argv[0]``).

    ``environ`` supplies the options' own variables (``NUCLEUS_TRIO_GRACE``
    and the like, see ``_apply_own_environment``) and the peers'
    (``TINI_SUBREAPER`` and the like, see ``_apply_peer_environment``):
    a flag wins over its variable, which wins over the peers'.
    Returns the action (:attr:`Action.RUN <nucleus_trio.config.Action.RUN>`,
    ``HELP`` or ``VERSION``) and the configuration. Raises :class:`UsageError`
    with a one-line reason.
    """
    # The parse's state: each field's value so far, a fresh list for each
    # repeatable option (whose default is empty).
    values = dict(_DEFAULTS)
    values.update((name, []) for name in _REPEATED)
    # A bad variable must not stop -h or -V: its error waits for the run.
    environment_error: UsageError | None = None
    from_environment: set[str] = set()
    try:
        _apply_peer_environment(values, environ or {})
        from_environment = _apply_own_environment(values, environ or {})
    except UsageError as exc:
        environment_error = exc
    words = tuple(args)
    action, index = _scan(words, values, from_environment)
    if action != Action.RUN:
        return action, Config()
    if environment_error is not None:
        raise environment_error
    return Action.RUN, _finish(values, words[index:], from_environment)


def _scan(
    words: "Sequence[str]", values: dict[str, object], from_environment: set[str]
) -> tuple[str, int]:
    """Apply the options at the front of ``words`` to ``values``; a field in
    ``from_environment`` starts afresh at its first flag (the flag wins).

    Returns the action (``RUN`` unless ``-h`` or ``-V`` came first) and the
    index of the program's first word.
    """
    index = 0
    while index < len(words):
        word = words[index]
        if "\0" in word:
            raise UsageError("arguments must not contain NUL bytes")
        if word == "--":
            return Action.RUN, index + 1
        if not word.startswith("-") or word == "-":
            break
        index += 1
        if from_environment:
            _forget_environment(word, values, from_environment)
        if word.startswith("--"):
            action, index = _long_option(word, words, index, values)
        else:
            action, index = _short_cluster(word, words, index, values)
        if action != Action.RUN:
            return action, index
    return Action.RUN, index


def _forget_environment(word: str, values: dict[str, object], fields: set[str]) -> None:
    """Reset what a variable set for the options ``word`` spells."""
    if word.startswith("--"):
        option = _BY_FLAG.get(word.partition("=")[0])
        if option is None:
            try:
                option = _BY_FLAG[_expand_long(word.partition("=")[0])]
            except UsageError:
                return  # the parse proper reports it
        flags = [option]
    else:
        flags = []
        for letter in word[1:]:
            option = _BY_FLAG.get("-" + letter)
            if option is None:
                break
            flags.append(option)
            if option.takes_value:
                break
    for option in flags:
        if option.field in fields:
            fields.discard(option.field)
            values[option.field] = [] if option.kind == REPEAT else _DEFAULTS[option.field]


def _long_option(
    word: str, words: "Sequence[str]", index: int, values: dict[str, object]
) -> tuple[str, int]:
    """Apply ``--name``, ``--name=value`` or ``--name value``, where an
    unambiguous prefix of the name will do; ``index`` is the next word's."""
    name, eq, inline = word.partition("=")
    flag = _expand_long(name)
    option = _BY_FLAG[flag]
    if option.takes_value:
        # "--rewrite=" gives the empty value; only a missing "=" takes the next word.
        if not eq:
            inline, index = _next_word(flag, words, index)
        return _apply(option, flag, inline, values), index
    if eq:
        raise UsageError(f"option {flag} takes no value")
    return _apply(option, flag, None, values), index


def _short_cluster(
    word: str, words: "Sequence[str]", index: int, values: dict[str, object]
) -> tuple[str, int]:
    """Apply a cluster of short options: ``-vvw``, ``-gr TERM:INT``, ``-grTERM:INT``."""
    for position in range(1, len(word)):
        flag = "-" + word[position]
        option = _BY_FLAG.get(flag)
        if option is None:
            raise UsageError(f"unknown option {flag!r}")
        if option.takes_value:
            # The rest of the word is the value, even letters that look like flags.
            raw = word[position + 1 :]
            if not raw:
                raw, index = _next_word(flag, words, index)
            return _apply(option, flag, raw, values), index
        action = _apply(option, flag, None, values)
        if action != Action.RUN:
            return action, index
    return Action.RUN, index


def _expand_long(word: str) -> str:
    """Resolve an unambiguous prefix of a long option, as getopt_long does."""
    if word in _BY_FLAG:
        return word
    matches = [name for name in _LONG_NAMES if name.startswith(word)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"ambiguous option {word!r} (could be {', '.join(matches)})")
    raise UsageError(f"unknown option {word!r}")


def _next_word(flag: str, words: "Sequence[str]", index: int) -> tuple[str, int]:
    """The word at ``index`` as ``flag``'s value, whatever it looks like."""
    if index >= len(words):
        raise UsageError(f"option {flag} needs a value")
    return words[index], index + 1


def _apply(option: Option, flag: str, raw: str | None, values: dict[str, object]) -> str:
    """Apply one option, spelled ``flag``, with its value ``raw`` if it takes
    one; return the action it asks for. Later options override earlier ones."""
    if option.kind == ACTION:
        assert isinstance(option.const, str)
        return option.const
    if option.kind == SWITCH:
        values[option.field] = option.const
    elif option.kind == COUNT:
        count = values[option.field]
        assert isinstance(count, int)
        values[option.field] = count + 1
    else:
        assert option.parse is not None and raw is not None
        try:
            value = option.parse(raw)
        except (SignalSpecError, EnvError) as exc:
            # Their messages do not say which option was wrong.
            raise UsageError(f"{flag}: {exc}") from None
        if option.kind == VALUE:
            values[option.field] = value
        else:
            collected = values[option.field]
            assert isinstance(collected, list)
            collected.append(value)
    return Action.RUN


def _finish(
    values: dict[str, object], program: tuple[str, ...], from_environment: set[str]
) -> Config:
    """Check what no single option can, then freeze the parse into a Config."""
    if any("\0" in word for word in program):
        raise UsageError("arguments must not contain NUL bytes")
    parse_only = {name: values.pop(name) for name in _PARSE_ONLY}
    config = Config(program, **values)
    if config.pause and program:
        raise UsageError("-P/--pause runs no program, but one was given")
    if not config.pause and not program:
        raise UsageError("no PROGRAM given")
    if program and program[0] == "":
        raise UsageError("PROGRAM must not be an empty string")
    try:
        check_env_assignments(config.env, clean_env=config.clean_env, sd_notify=config.sd_notify)
    except EnvError as exc:
        raise UsageError(str(exc)) from None
    user, groups = parse_only["user"], parse_only["groups"]
    if user is None and groups is None:
        return config
    # Last: names are looked up in the passwd and group databases, and the
    # other errors of the line come first.
    try:
        values["identity"] = _resolve_identity(user, groups)
    except UsageError as exc:
        named = [
            environment_variable(f"--{f}") for f in ("user", "groups") if f in from_environment
        ]
        if not named:
            raise
        raise UsageError(f"{' and '.join(named)}: {exc}") from None
    return Config(program, **values)


def _resolve_identity(user: object, groups: object) -> "Identity | None":
    """The workload's identity from ``--user`` and ``--groups``."""
    from nucleus_trio.identity import IdentityError, resolve_identity

    assert user is None or isinstance(user, str)
    assert groups is None or isinstance(groups, list)
    try:
        return resolve_identity(user, groups)
    except IdentityError as exc:
        raise UsageError(str(exc)) from None
