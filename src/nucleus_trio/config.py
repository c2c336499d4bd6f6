"""The command line: parsing and validation into an immutable :class:`Config`.

Pure and standard-library only: it runs before the workload is spawned, where
``argparse`` (10 ms), ``attrs`` (45 ms) or ``re`` (8 ms) would delay the
workload's start. Options end at ``--`` or at the first word that is not an
option, so ``nucleus-trio cmd -g`` passes ``-g`` to ``cmd``.
"""

from __future__ import annotations

from nucleus_trio.environment import EnvError, check_env_assignments, parse_env_assignment
from nucleus_trio.signals import SignalSpecError, parse_rewrite, parse_signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from nucleus_trio.identity import Identity

PROG = "nucleus-trio"

USAGE = f"usage: {PROG} [OPTIONS] [--] PROGRAM [ARGS...]   (or {PROG} -P [OPTIONS])"

HELP = f"""{USAGE}

Run PROGRAM as the workload of an init: forward signals to it, reap orphaned
zombies, and exit with its status (128+S when a signal S killed it).

options:
  -s, --subreaper          register as child subreaper (default when not PID 1)
      --no-subreaper       do not register as child subreaper
  -g, --pgroup             forward signals to the workload's whole process group
  -c, --single-child       forward signals to the workload alone (default)
  -r, --rewrite FROM:TO    rewrite a received signal before forwarding it; TO=0
                           drops it; names (TERM, SIGTERM) or numbers; repeatable
  -e, --remap-exit CODE    exit 0 when the workload's outcome is CODE (death by
                           signal S counts as 128+S); repeatable
  -p, --pdeathsig SIGNAL   have the kernel send SIGNAL to the init when its
                           parent dies
  -P, --pause              run no program: reap orphans, exit 0 on SIGINT/SIGTERM
  -t, --grace SECONDS      when the workload has exited, give the processes left
                           behind this long after SIGTERM before SIGKILL
                           (default 5; ends early once they are all gone)
      --kill-after SECONDS after forwarding SIGTERM or SIGINT, SIGKILL the
                           workload (its group with -g) if it is still alive
                           SECONDS later (default: never)
  -w, --warn-reap          log a warning for every orphan reaped
      --audit DEST         write audit events as JSON lines to DEST: a file
                           (appended, created 0600), - for stderr, or fd:N
      --container-id ID    correlation field of every audit event
                           (default: the hostname)
      --container-name NAME
                           correlation field of every audit event
                           (default: PROGRAM's base name, or "pause")
      --redact-args        log only PROGRAM in audit events, not its arguments
      --clean-env          start the workload from a minimal environment
                           (PATH, TERM=xterm, HOME=/) instead of the inherited one
      --env KEY=VALUE      set a variable for the workload; repeatable
      --sd-notify          pass NOTIFY_SOCKET through (abstract, or under /run/)
      --no-new-privs       set PR_SET_NO_NEW_PRIVS for the workload
      --user USER[:GROUP]  run the workload as USER (name or number), with GROUP
                           or else USER's primary group
      --groups GROUP[,GROUP...]
                           the workload's supplementary groups (with --user,
                           none unless given)
  -v, --verbose            more logging on stderr (repeatable)
  -q, --quiet              less logging on stderr
  -V, --version            print the version and exit
  -h, --help               print this help and exit

environment (the peers' variables, so an image keeps its settings; flags win):
  TINI_SUBREAPER           set (to anything): as -s
  TINI_KILL_PROCESS_GROUP  set (to anything): as -g
  TINI_VERBOSITY=N         logging level 0-3 (1 is the default, 3 the most)
  DUMB_INIT_DEBUG=1, CATATONIT_DEBUG
                           the most logging, as TINI_VERBOSITY=3

exit status: the workload's; 126/127 when PROGRAM cannot be run; 2 on bad usage.
"""


#: Seconds between SIGTERM and SIGKILL for the processes left behind.
DEFAULT_GRACE = 5.0

#: The largest number of seconds accepted, so a typo cannot mean "forever".
MAX_SECONDS = 10_000_000.0


class UsageError(Exception):
    """A command line that cannot be run; the message is one line for the user."""


class Config:
    """Everything the command line decides, validated and immutable.

    A plain ``__slots__`` class rather than an attrs one: it is built before
    the workload is spawned, where importing attrs would cost tens of ms.
    """

    __slots__ = (
        "argv",
        "audit",
        "clean_env",
        "container_id",
        "container_name",
        "env",
        "grace",
        "identity",
        "kill_after",
        "no_new_privs",
        "pause",
        "pdeathsig",
        "pgroup",
        "redact_args",
        "remap_exit",
        "rewrites",
        "sd_notify",
        "subreaper",
        "verbosity",
        "warn_reap",
    )

    argv: tuple[str, ...]
    audit: str | None
    clean_env: bool
    container_id: str | None
    container_name: str | None
    env: tuple[tuple[str, str], ...]
    identity: Identity | None
    no_new_privs: bool
    redact_args: bool
    sd_notify: bool
    grace: float
    kill_after: float | None
    pause: bool
    pgroup: bool
    pdeathsig: int | None
    remap_exit: frozenset[int]
    rewrites: tuple[tuple[int, int], ...]
    subreaper: bool | None
    verbosity: int
    warn_reap: bool

    def __init__(
        self,
        argv: Sequence[str] = (),
        *,
        audit: str | None = None,
        clean_env: bool = False,
        container_id: str | None = None,
        container_name: str | None = None,
        env: Sequence[tuple[str, str]] = (),
        identity: Identity | None = None,
        no_new_privs: bool = False,
        redact_args: bool = False,
        sd_notify: bool = False,
        grace: float = DEFAULT_GRACE,
        kill_after: float | None = None,
        pause: bool = False,
        pgroup: bool = False,
        pdeathsig: int | None = None,
        remap_exit: frozenset[int] = frozenset(),
        rewrites: Sequence[tuple[int, int]] = (),
        subreaper: bool | None = None,
        verbosity: int = 1,
        warn_reap: bool = False,
    ) -> None:
        values = {
            "argv": tuple(argv),
            "audit": audit,
            "clean_env": clean_env,
            "container_id": container_id,
            "container_name": container_name,
            "env": tuple(env),
            "identity": identity,
            "no_new_privs": no_new_privs,
            "redact_args": redact_args,
            "sd_notify": sd_notify,
            "grace": grace,
            "kill_after": kill_after,
            "pause": pause,
            "pgroup": pgroup,
            "pdeathsig": pdeathsig,
            "remap_exit": frozenset(remap_exit),
            "rewrites": tuple(rewrites),
            "subreaper": subreaper,
            "verbosity": verbosity,
            "warn_reap": warn_reap,
        }
        for name, value in values.items():
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


class Action:
    """What the command line asks for besides running: help or version."""

    RUN = "run"
    HELP = "help"
    VERSION = "version"


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


class _Draft:
    """The mutable state of one parse, frozen into a :class:`Config` at the end."""

    __slots__ = (
        "audit",
        "clean_env",
        "container_id",
        "container_name",
        "env",
        "grace",
        "groups",
        "kill_after",
        "no_new_privs",
        "pause",
        "pdeathsig",
        "pgroup",
        "redact_args",
        "remaps",
        "rewrites",
        "sd_notify",
        "subreaper",
        "user",
        "verbosity",
        "warn_reap",
    )

    def __init__(self) -> None:
        self.audit: str | None = None
        self.clean_env = False
        self.container_id: str | None = None
        self.container_name: str | None = None
        self.env: list[tuple[str, str]] = []
        self.groups: list[str] | None = None
        self.no_new_privs = False
        self.redact_args = False
        self.sd_notify = False
        self.user: str | None = None
        self.grace = DEFAULT_GRACE
        self.kill_after: float | None = None
        self.pause = False
        self.pgroup = False
        self.pdeathsig: int | None = None
        self.remaps: set[int] = set()
        self.rewrites: list[tuple[int, int]] = []
        self.subreaper: bool | None = None
        self.verbosity = 1
        self.warn_reap = False

    def switch(self, flag: str) -> None:
        """Apply a flag without a value; later flags override earlier ones."""
        if flag in ("-s", "--subreaper"):
            self.subreaper = True
        elif flag == "--no-subreaper":
            self.subreaper = False
        elif flag in ("-g", "--pgroup"):
            self.pgroup = True
        elif flag in ("-c", "--single-child"):
            self.pgroup = False
        elif flag in ("-P", "--pause"):
            self.pause = True
        elif flag in ("-w", "--warn-reap"):
            self.warn_reap = True
        elif flag in ("-v", "--verbose"):
            self.verbosity += 1
        elif flag in ("-q", "--quiet"):
            self.verbosity = 0
        elif flag == "--clean-env":
            self.clean_env = True
        elif flag == "--sd-notify":
            self.sd_notify = True
        elif flag == "--no-new-privs":
            self.no_new_privs = True
        elif flag == "--redact-args":
            self.redact_args = True
        else:  # pragma: no cover - the tables below only hold known flags
            raise UsageError(f"unknown option {flag!r}")

    def valued(self, flag: str, raw: str) -> None:
        """Apply a flag with a value; every one of them may be repeated."""
        try:
            if flag in ("-r", "--rewrite"):
                self.rewrites.append(parse_rewrite(raw))
            elif flag in ("-e", "--remap-exit"):
                self.remaps.add(_parse_exit_code(raw))
            elif flag in ("-t", "--grace"):
                self.grace = parse_seconds(raw)
            elif flag == "--kill-after":
                self.kill_after = parse_seconds(raw)
            elif flag == "--audit":
                self.audit = parse_audit_destination(raw)
            elif flag == "--container-id":
                self.container_id = raw
            elif flag == "--container-name":
                self.container_name = raw
            elif flag == "--env":
                self.env.append(parse_env_assignment(raw))
            elif flag == "--user":
                self.user = raw
            elif flag == "--groups":
                self.groups = [name.strip() for name in raw.split(",")] if raw.strip() else []
            else:
                self.pdeathsig = parse_signal(raw)
        except (SignalSpecError, EnvError) as exc:
            raise UsageError(f"{flag}: {exc}") from None


_SWITCHES = frozenset(
    {
        "-s",
        "--subreaper",
        "--no-subreaper",
        "-g",
        "--pgroup",
        "-c",
        "--single-child",
        "-P",
        "--pause",
        "-w",
        "--warn-reap",
        "-v",
        "--verbose",
        "-q",
        "--quiet",
        "--clean-env",
        "--sd-notify",
        "--no-new-privs",
        "--redact-args",
    }
)
_VALUED = frozenset(
    {
        "-r",
        "--rewrite",
        "-e",
        "--remap-exit",
        "-p",
        "--pdeathsig",
        "-t",
        "--grace",
        "--kill-after",
        "--audit",
        "--container-id",
        "--container-name",
        "--env",
        "--user",
        "--groups",
    }
)
_LONG_NAMES = sorted(
    name for name in (*_SWITCHES, *_VALUED, "--help", "--version") if name.startswith("--")
)


def _expand_long(word: str) -> str:
    """Resolve an unambiguous prefix of a long option, as getopt_long does."""
    if word in _LONG_NAMES:
        return word
    matches = [name for name in _LONG_NAMES if name.startswith(word)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"ambiguous option {word!r} (could be {', '.join(matches)})")
    raise UsageError(f"unknown option {word!r}")


#: The most logging (debug); the default is 1 (warnings).
MAX_VERBOSITY = 3

#: The peers' environment variables that :func:`parse_args` reads.
PEER_VARIABLES = (
    "TINI_SUBREAPER",
    "TINI_KILL_PROCESS_GROUP",
    "TINI_VERBOSITY",
    "DUMB_INIT_DEBUG",
    "CATATONIT_DEBUG",
)


def _apply_peer_environment(draft: _Draft, environ: Mapping[str, str]) -> None:
    """Defaults from the environment variables of tini, dumb-init and
    catatonit, applied before the flags so that a flag wins.

    An image that set them for a peer keeps its behaviour after the switch.
    tini's switches are presence tests, as in tini (``TINI_SUBREAPER=0``
    turns it on); ``TINI_VERBOSITY`` counts as tini's levels do. dumb-init's
    ``DUMB_INIT_SETSID=0`` asks for what is already the default here (signals
    to the workload alone), so it needs nothing.
    """
    if "TINI_SUBREAPER" in environ:
        draft.subreaper = True
    if "TINI_KILL_PROCESS_GROUP" in environ:
        draft.pgroup = True
    if environ.get("DUMB_INIT_DEBUG") == "1" or "CATATONIT_DEBUG" in environ:
        draft.verbosity = MAX_VERBOSITY
    text = environ.get("TINI_VERBOSITY")
    if text is not None:
        try:
            level = int(text.strip(), 10)
        except ValueError:
            raise UsageError(
                f"TINI_VERBOSITY must be a whole number (0-{MAX_VERBOSITY}), not {text!r}"
            ) from None
        draft.verbosity = min(max(level, 0), MAX_VERBOSITY)


def parse_args(args: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[str, Config]:
    """Parse the init's arguments (without ``argv[0]``).

    ``environ`` supplies the peers' variables (``TINI_SUBREAPER`` and the
    like, see :func:`_apply_peer_environment`); the flags override them.
    Returns the action (:attr:`Action.RUN`, ``HELP`` or ``VERSION``) and the
    configuration. Raises :class:`UsageError` with a one-line reason.
    """
    draft = _Draft()
    # A bad variable must not stop -h or -V: its error waits for the run.
    environment_error: UsageError | None = None
    try:
        _apply_peer_environment(draft, environ or {})
    except UsageError as exc:
        environment_error = exc
    words = list(args)
    index = 0

    def take_value(flag: str, inline: str | None) -> str:
        nonlocal index
        if inline is not None:
            return inline
        if index >= len(words):
            raise UsageError(f"option {flag} needs a value")
        index += 1
        return words[index - 1]

    while index < len(words):
        word = words[index]
        if "\0" in word:
            raise UsageError("arguments must not contain NUL bytes")
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        index += 1
        if word.startswith("--"):
            name, eq, inline = word.partition("=")
            flag = _expand_long(name)
            if flag in _VALUED:
                draft.valued(flag, take_value(flag, inline if eq else None))
            elif eq:
                raise UsageError(f"option {flag} takes no value")
            elif flag == "--help":
                return Action.HELP, Config()
            elif flag == "--version":
                return Action.VERSION, Config()
            else:
                draft.switch(flag)
            continue
        # A cluster of short options: -vvw, -gr TERM:INT, -rTERM:INT.
        for position in range(1, len(word)):
            flag = "-" + word[position]
            if flag in _VALUED:
                rest = word[position + 1 :]
                draft.valued(flag, take_value(flag, rest or None))
                break
            if flag == "-h":
                return Action.HELP, Config()
            if flag == "-V":
                return Action.VERSION, Config()
            if flag not in _SWITCHES:
                raise UsageError(f"unknown option {flag!r}")
            draft.switch(flag)

    if environment_error is not None:
        raise environment_error
    program = tuple(words[index:])
    if any("\0" in word for word in program):
        raise UsageError("arguments must not contain NUL bytes")
    if draft.pause and program:
        raise UsageError("-P/--pause runs no program, but one was given")
    if not draft.pause and not program:
        raise UsageError("no PROGRAM given")
    if program and program[0] == "":
        raise UsageError("PROGRAM must not be an empty string")
    try:
        check_env_assignments(draft.env, clean_env=draft.clean_env, sd_notify=draft.sd_notify)
    except EnvError as exc:
        raise UsageError(str(exc)) from None
    identity = None
    if draft.user is not None or draft.groups is not None:
        from nucleus_trio.identity import IdentityError, resolve_identity

        try:
            identity = resolve_identity(draft.user, draft.groups)
        except IdentityError as exc:
            raise UsageError(str(exc)) from None
    config = Config(
        program,
        audit=draft.audit,
        clean_env=draft.clean_env,
        container_id=draft.container_id,
        container_name=draft.container_name,
        env=draft.env,
        identity=identity,
        no_new_privs=draft.no_new_privs,
        redact_args=draft.redact_args,
        sd_notify=draft.sd_notify,
        grace=draft.grace,
        kill_after=draft.kill_after,
        pause=draft.pause,
        pgroup=draft.pgroup,
        pdeathsig=draft.pdeathsig,
        remap_exit=frozenset(draft.remaps),
        rewrites=draft.rewrites,
        subreaper=draft.subreaper,
        verbosity=draft.verbosity,
        warn_reap=draft.warn_reap,
    )
    return Action.RUN, config
