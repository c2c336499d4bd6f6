"""Unit and property tests for :func:`nucleus_trio.config.parse_args` and Config."""

from __future__ import annotations

import signal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nucleus_trio.config import HELP, USAGE, Action, Config, UsageError, parse_args
from nucleus_trio.signals import SIGRTMIN


def run(*args: str) -> Config:
    """Parse a command line that must be a plain run; return its Config."""
    action, config = parse_args(list(args))
    assert action == Action.RUN
    return config


def usage_error(*args: str) -> str:
    with pytest.raises(UsageError) as info:
        parse_args(list(args))
    message = str(info.value)
    assert message
    assert len(message.splitlines()) == 1
    return message


# --------------------------------------------------------------------- defaults


def test_defaults() -> None:
    config = run("cmd")
    assert config.argv == ("cmd",)
    assert config.pause is False
    assert config.pgroup is False
    assert config.pdeathsig is None
    assert config.remap_exit == frozenset()
    assert config.rewrites == ()
    assert config.subreaper is None
    assert config.verbosity == 1
    assert config.warn_reap is False
    assert config == Config(("cmd",))


def test_program_arguments_pass_through() -> None:
    assert run("sh", "-c", "exit 3").argv == ("sh", "-c", "exit 3")
    assert run("cmd", "").argv == ("cmd", "")
    assert run("-").argv == ("-",)
    assert run("-", "-g").argv == ("-", "-g")


# ------------------------------------------------------------------- each flag


@pytest.mark.parametrize("flag", ["-s", "--subreaper"])
def test_subreaper(flag: str) -> None:
    assert run(flag, "cmd").subreaper is True


def test_no_subreaper() -> None:
    assert run("--no-subreaper", "cmd").subreaper is False


@pytest.mark.parametrize("flag", ["-g", "--pgroup"])
def test_pgroup(flag: str) -> None:
    assert run(flag, "cmd").pgroup is True


@pytest.mark.parametrize("flag", ["-c", "--single-child"])
def test_single_child(flag: str) -> None:
    assert run(flag, "cmd").pgroup is False


@pytest.mark.parametrize(
    ("args", "pgroup"),
    [
        (["-g", "-c"], False),
        (["-c", "-g"], True),
        (["-g", "-c", "-g"], True),
        (["-gc"], False),
        (["-cg"], True),
        (["--pgroup", "--single-child"], False),
        (["--single-child", "-g"], True),
    ],
)
def test_last_of_pgroup_and_single_child_wins(args: list[str], pgroup: bool) -> None:
    assert run(*args, "cmd").pgroup is pgroup


@pytest.mark.parametrize(
    ("args", "subreaper"),
    [
        (["-s", "--no-subreaper"], False),
        (["--no-subreaper", "-s"], True),
        (["--no-subreaper", "--subreaper"], True),
    ],
)
def test_last_of_subreaper_flags_wins(args: list[str], subreaper: bool) -> None:
    assert run(*args, "cmd").subreaper is subreaper


@pytest.mark.parametrize(
    "args",
    [
        ["-r", "TERM:INT"],
        ["-rTERM:INT"],
        ["--rewrite", "TERM:INT"],
        ["--rewrite=TERM:INT"],
        ["--rew=SIGTERM:SIGINT"],
        ["--rewr", "15:2"],
    ],
)
def test_rewrite_forms(args: list[str]) -> None:
    assert run(*args, "cmd").rewrites == ((signal.SIGTERM, signal.SIGINT),)


def test_rewrite_to_zero_and_realtime() -> None:
    config = run("-r", "TERM:0", "-r", "RTMIN+2:HUP", "cmd")
    assert config.rewrites == ((15, 0), (SIGRTMIN + 2, 1))
    assert config.rewrite_map() == {15: 0, SIGRTMIN + 2: 1}


def test_repeated_rewrites_keep_order_and_last_wins_in_map() -> None:
    config = run("-r", "TERM:INT", "-r", "HUP:0", "-r", "TERM:QUIT", "cmd")
    assert config.rewrites == ((15, 2), (1, 0), (15, 3))
    assert config.rewrite_map() == {15: 3, 1: 0}


@pytest.mark.parametrize(
    ("rule", "needle"),
    [("CHLD:TERM", "SIGCHLD"), ("KILL:TERM", "SIGKILL"), ("SEGV:TERM", "SIGSEGV"),
     ("TTIN:0", "SIGTTIN")],
)
def test_rewrite_of_never_forwarded_signal_is_a_usage_error(rule: str, needle: str) -> None:
    message = usage_error("-r", rule, "cmd")
    assert needle in message
    assert "-r" in message


@pytest.mark.parametrize("rule", ["TERM", "TERM:", ":INT", "BOGUS:INT", "TERM:BOGUS", "0:TERM",
                                  "TERM:INT:HUP", ""])
def test_bad_rewrite(rule: str) -> None:
    usage_error("-r", rule, "cmd")
    usage_error(f"--rewrite={rule}", "cmd")


@pytest.mark.parametrize(
    "args",
    [["-e", "143"], ["-e143"], ["--remap-exit", "143"], ["--remap-exit=143"], ["--rem", "143"],
     ["-e", " 143 "]],
)
def test_remap_exit_forms(args: list[str]) -> None:
    assert run(*args, "cmd").remap_exit == frozenset({143})


def test_repeated_remap_exit() -> None:
    config = run("-e", "1", "-e", "143", "-e1", "--remap-exit=0", "cmd")
    assert config.remap_exit == frozenset({0, 1, 143})
    assert run("-e", "007", "cmd").remap_exit == frozenset({7})
    assert run("-e", "255", "cmd").remap_exit == frozenset({255})


@pytest.mark.parametrize("code", ["256", "-1", "1.0", "", " ", "x", "0x10", "1000", "0255",
                                  "9" * 5000, "\u0661"])
def test_bad_remap_exit(code: str) -> None:
    usage_error("-e", code, "cmd")


@pytest.mark.parametrize(
    "args",
    [["-p", "KILL"], ["-pKILL"], ["-p", "9"], ["--pdeathsig", "SIGKILL"], ["--pdeathsig=kill"],
     ["--pd", "9"]],
)
def test_pdeathsig_forms(args: list[str]) -> None:
    assert run(*args, "cmd").pdeathsig == signal.SIGKILL


def test_last_pdeathsig_wins() -> None:
    assert run("-p", "KILL", "-p", "TERM", "cmd").pdeathsig == signal.SIGTERM


@pytest.mark.parametrize("value", ["0", "BOGUS", "65", "", "RTMIN+99"])
def test_bad_pdeathsig(value: str) -> None:
    message = usage_error("-p", value, "cmd")
    assert message.startswith("-p")
    assert usage_error(f"--pdeathsig={value}", "cmd").startswith("--pdeathsig")


@pytest.mark.parametrize("flag", ["-w", "--warn-reap", "--warn", "--w"])
def test_warn_reap(flag: str) -> None:
    assert run(flag, "cmd").warn_reap is True


def test_verbosity() -> None:
    assert run("-v", "cmd").verbosity == 2
    assert run("-vvv", "cmd").verbosity == 4
    assert run("-v", "--verbose", "cmd").verbosity == 3
    assert run("-q", "cmd").verbosity == 0
    assert run("--quiet", "cmd").verbosity == 0
    assert run("-vv", "-q", "cmd").verbosity == 0


@pytest.mark.parametrize("flag", ["-P", "--pause", "--pa"])
def test_pause(flag: str) -> None:
    config = run(flag)
    assert config.pause is True
    assert config.argv == ()
    assert run(flag, "--").pause is True


@pytest.mark.parametrize("args", [["-P", "cmd"], ["--pause", "cmd"], ["-P", "--", "cmd"],
                                  ["-P", "--", "--"], ["-P", "-"]])
def test_pause_with_a_program_is_an_error(args: list[str]) -> None:
    assert "-P" in usage_error(*args)


@pytest.mark.parametrize("args", [[], ["--"], ["-g"], ["-v", "--"], ["-r", "TERM:INT"]])
def test_no_program_is_an_error(args: list[str]) -> None:
    assert "PROGRAM" in usage_error(*args)


@pytest.mark.parametrize("args", [[""], ["--", ""], ["-g", "", "x"]])
def test_empty_program_is_an_error(args: list[str]) -> None:
    usage_error(*args)


# ------------------------------------------------------------------- clusters


def test_short_cluster_of_switches() -> None:
    config = run("-vvw", "cmd")
    assert config.verbosity == 3
    assert config.warn_reap is True
    config = run("-sgw", "cmd")
    assert (config.subreaper, config.pgroup, config.warn_reap) == (True, True, True)


def test_cluster_ending_in_valued_flag_takes_next_word() -> None:
    config = run("-gr", "TERM:INT", "cmd")
    assert config.pgroup is True
    assert config.rewrites == ((15, 2),)


def test_cluster_valued_flag_takes_the_rest_of_the_word() -> None:
    config = run("-grTERM:INT", "cmd")
    assert config.pgroup is True
    assert config.rewrites == ((15, 2),)
    # Everything after -r is its value, even letters that look like flags.
    assert run("-e1", "cmd").remap_exit == frozenset({1})
    usage_error("-rg", "cmd")  # "g" is not a rewrite rule


def test_unknown_short_flag_in_cluster() -> None:
    assert "-x" in usage_error("-gx", "cmd")
    assert "-x" in usage_error("-x", "cmd")
    usage_error("-5", "cmd")


# ------------------------------------------------------------------ long forms


@pytest.mark.parametrize(
    ("prefix", "attribute", "value"),
    [
        ("--pg", "pgroup", True),
        ("--pgr", "pgroup", True),
        ("--su", "subreaper", True),
        ("--no-su", "subreaper", False),
        ("--no-s", "subreaper", False),
        ("--pa", "pause", True),
        ("--w", "warn_reap", True),
        ("--verb", "verbosity", 2),
        ("--q", "verbosity", 0),
    ],
)
def test_unambiguous_long_prefixes(prefix: str, attribute: str, value: object) -> None:
    args = [prefix] if attribute == "pause" else [prefix, "cmd"]
    assert getattr(run(*args), attribute) == value


@pytest.mark.parametrize(
    "prefix", ["--p", "--re", "--s", "--v", "--ver", "--=x"]
)
def test_ambiguous_long_prefixes(prefix: str) -> None:
    assert "ambiguous" in usage_error(prefix, "cmd")


@pytest.mark.parametrize("word", ["--bogus", "---", "--pgroupx", "--subreaper-now", "--x=1"])
def test_unknown_long_options(word: str) -> None:
    assert "unknown" in usage_error(word, "cmd")


@pytest.mark.parametrize("word", ["--pgroup=1", "--pg=", "--help=x", "--version=1",
                                  "--no-subreaper=yes", "--verbose=2"])
def test_long_switch_with_value(word: str) -> None:
    assert "takes no value" in usage_error(word, "cmd")


@pytest.mark.parametrize("args", [["-r"], ["--rewrite"], ["-e"], ["--remap-exit"], ["-p"],
                                  ["--pdeathsig"], ["-gr"], ["-vp"]])
def test_missing_value(args: list[str]) -> None:
    assert "needs a value" in usage_error(*args)


def test_value_word_is_consumed_even_if_it_looks_like_an_option() -> None:
    # -e takes the next word whatever it is; "-g" is not an exit code.
    usage_error("-e", "-g", "cmd")
    # -r swallows "cmd", leaving no program.
    usage_error("-r", "cmd")


def test_empty_inline_long_value_is_not_the_next_word() -> None:
    # "--rewrite=" gives the empty value; it must not take "TERM:INT" from the next word.
    usage_error("--rewrite=", "TERM:INT", "cmd")


# --------------------------------------------------------- where options stop


def test_options_stop_at_first_non_option() -> None:
    config = run("cmd", "-g")
    assert config.argv == ("cmd", "-g")
    assert config.pgroup is False
    config = run("-g", "cmd", "-c", "--", "-P")
    assert config.pgroup is True
    assert config.argv == ("cmd", "-c", "--", "-P")


def test_options_stop_at_double_dash() -> None:
    config = run("-g", "--", "-c", "x")
    assert config.pgroup is True
    assert config.argv == ("-c", "x")
    assert run("--", "--help").argv == ("--help",)
    assert run("--", "-h").argv == ("-h",)


def test_double_dash_twice() -> None:
    assert run("--", "--").argv == ("--",)
    assert run("--", "--", "x").argv == ("--", "x")
    assert run("-v", "--", "--", "--").argv == ("--", "--")


def test_help_and_version_after_program_belong_to_it() -> None:
    assert run("cmd", "-h", "-V", "--help").argv == ("cmd", "-h", "-V", "--help")


# ------------------------------------------------------------- help / version


@pytest.mark.parametrize(
    ("args", "action"),
    [
        (["-h"], Action.HELP),
        (["--help"], Action.HELP),
        (["--he"], Action.HELP),
        (["--h"], Action.HELP),
        (["-V"], Action.VERSION),
        (["--version"], Action.VERSION),
        (["--vers"], Action.VERSION),
        (["-vh"], Action.HELP),
        (["-gV", "cmd"], Action.VERSION),
        (["-P", "-h", "cmd"], Action.HELP),
        (["-h", "--bogus"], Action.HELP),
        (["-g", "-V", "-r", "BOGUS"], Action.VERSION),
    ],
)
def test_help_and_version(args: list[str], action: str) -> None:
    got, config = parse_args(args)
    assert got == action
    assert config == Config()


def test_help_text() -> None:
    assert HELP.startswith(USAGE)
    for flag in ("--subreaper", "--no-subreaper", "--pgroup", "--single-child", "--rewrite",
                 "--remap-exit", "--pdeathsig", "--pause", "--warn-reap", "--verbose",
                 "--quiet", "--version", "--help"):
        assert flag in HELP
    assert "\n" not in USAGE


# ----------------------------------------------------------------------- NULs


@pytest.mark.parametrize(
    "args",
    [["cmd\0"], ["cmd", "a\0b"], ["-g\0", "cmd"], ["--", "x\0"], ["-r", "TERM\0:INT", "cmd"],
     ["-e", "1\0", "cmd"], ["--pdeathsig=KILL\0", "cmd"], ["\0"]],
)
def test_nul_bytes_are_usage_errors(args: list[str]) -> None:
    usage_error(*args)


# --------------------------------------------------------------------- Config


def test_config_is_immutable() -> None:
    config = run("-g", "cmd")
    with pytest.raises(AttributeError):
        config.pgroup = False
    with pytest.raises(AttributeError):
        config.argv = ("other",)
    with pytest.raises(AttributeError):
        config.brand_new = 1
    assert config.pgroup is True
    assert config.argv == ("cmd",)


def test_config_attributes_cannot_be_deleted() -> None:
    config = run("-g", "cmd")
    with pytest.raises(AttributeError):
        del config.pgroup
    assert config.pgroup is True


def test_config_copies_its_inputs() -> None:
    argv = ["a", "b"]
    rewrites = [(15, 2)]
    remap = {1}
    config = Config(argv, rewrites=rewrites, remap_exit=frozenset(remap))
    argv.append("c")
    rewrites.append((1, 0))
    assert config.argv == ("a", "b")
    assert config.rewrites == ((15, 2),)
    assert isinstance(config.argv, tuple)
    assert isinstance(config.rewrites, tuple)
    assert isinstance(config.remap_exit, frozenset)


def test_config_equality_and_hash() -> None:
    first = run("-g", "-e", "1", "-e", "2", "-r", "TERM:INT", "cmd", "x")
    second = run("--pgroup", "-e2", "--remap-exit=1", "--rewrite", "15:2", "cmd", "x")
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1
    assert first != run("cmd", "x")
    assert first != run("-g", "-e", "1", "-e", "2", "-r", "TERM:INT", "cmd", "y")
    assert Config(["a"]) == Config(("a",))
    assert Config() != "Config()"
    assert Config() != None  # noqa: E711
    # Rules for the same signal in another order mean something else.
    assert run("-r", "TERM:INT", "-r", "TERM:HUP", "cmd") != run(
        "-r", "TERM:HUP", "-r", "TERM:INT", "cmd"
    )


def test_config_repr_names_every_field() -> None:
    text = repr(run("-g", "cmd"))
    assert text.startswith("Config(")
    for name in Config.__slots__:
        assert f"{name}=" in text
    assert "pgroup=True" in text
    assert "argv=('cmd',)" in text


@pytest.mark.parametrize(
    ("args", "as_pid1", "as_other"),
    [
        (["cmd"], False, True),
        (["-s", "cmd"], True, True),
        (["--subreaper", "cmd"], True, True),
        (["--no-subreaper", "cmd"], False, False),
        (["-s", "--no-subreaper", "cmd"], False, False),
        (["--no-subreaper", "-s", "cmd"], True, True),
        (["-P"], False, True),
    ],
)
def test_wants_subreaper(args: list[str], as_pid1: bool, as_other: bool) -> None:
    config = run(*args)
    assert config.wants_subreaper(True) is as_pid1
    assert config.wants_subreaper(False) is as_other


# ------------------------------------------------------------ property tests

_FLAGS = [
    "-s", "--subreaper", "--no-subreaper", "-g", "--pgroup", "-c", "--single-child", "-r",
    "--rewrite", "-e", "--remap-exit", "-p", "--pdeathsig", "-P", "--pause", "-w",
    "--warn-reap", "-v", "-vv", "--verbose", "-q", "--quiet", "-h", "--help", "-V",
    "--version", "--", "-", "", "--=", "--p", "--re", "--rewrite=", "-gr", "-rTERM:INT",
    "-e143", "--pg=1", "-x", "---", "--no",
]
_VALUES = [
    "TERM:INT", "TERM:0", "CHLD:TERM", "KILL", "0", "143", "256", "-1", "9" * 5000,
    "RTMIN+3", "RTMAX-99", "SIGRTMIN+" + "9" * 100, "1" * 30, "TERM\0", "\0", "cmd",
    "a\nb", "\u2028", "\u00e9", "\u017figterm",
]

_WORD = st.one_of(
    st.sampled_from(_FLAGS),
    st.sampled_from(_VALUES),
    st.text(max_size=12),
    st.text(alphabet="-=:+0123456789SIGTERMrRgGpPevVhHcq\0\n ", max_size=10),
    st.integers().map(str),
    st.builds(lambda flag, rest: flag + rest, st.sampled_from(_FLAGS), st.text(max_size=6)),
)


def _check(args: list[str]) -> None:
    try:
        action, config = parse_args(args)
    except UsageError as exc:
        message = str(exc)
        assert message
        assert len(message.splitlines()) == 1, message
        return
    assert action in (Action.RUN, Action.HELP, Action.VERSION)
    assert isinstance(config, Config)
    if action != Action.RUN:
        assert config == Config()
        return
    # The program is a suffix of the arguments, NUL-free, and present unless -P.
    assert config.argv == tuple(args[len(args) - len(config.argv) :])
    assert all("\0" not in word for word in config.argv)
    if config.pause:
        assert config.argv == ()
    else:
        assert config.argv
        assert config.argv[0] != ""
    assert all(0 <= code <= 255 for code in config.remap_exit)
    assert config.verbosity >= 0
    # Parsing is deterministic.
    assert parse_args(args) == (action, config)


@settings(max_examples=500)
@given(st.lists(_WORD, max_size=8))
@example(["cmd", "-g"])
@example(["--", "--"])
@example(["-r"])
@example(["-e", "9" * 5000, "x"])
@example(["--=\n"])
@example(["-\n"])
@example(["--x\u2028y"])
@example(["-r", "TERM:IN\u2028T", "x"])
@example(["\0"])
@example(["", "--"])
def test_parse_args_returns_or_raises_usage_error(args: list[str]) -> None:
    _check(args)


@given(st.lists(st.text(), max_size=6))
def test_parse_args_on_arbitrary_text(args: list[str]) -> None:
    _check(args)


@given(
    st.lists(st.sampled_from(["-g", "-c", "-s", "--no-subreaper", "-w", "-v", "-q"]), max_size=8),
    st.lists(st.text(min_size=1).filter(lambda w: "\0" not in w), min_size=1, max_size=4),
)
def test_switches_then_program(switches: list[str], program: list[str]) -> None:
    args = [*switches, "--", *program]
    config = run(*args)
    assert config.argv == tuple(program)
    pgroup_flags = [flag for flag in switches if flag in ("-g", "-c")]
    assert config.pgroup is (bool(pgroup_flags) and pgroup_flags[-1] == "-g")
    reaper_flags = [flag for flag in switches if flag in ("-s", "--no-subreaper")]
    assert config.subreaper == (reaper_flags[-1] == "-s" if reaper_flags else None)
    assert config.warn_reap is ("-w" in switches)
    if "-q" in switches:
        last_q = len(switches) - 1 - switches[::-1].index("-q")
        assert config.verbosity == switches[last_q:].count("-v")
    else:
        assert config.verbosity == 1 + switches.count("-v")
