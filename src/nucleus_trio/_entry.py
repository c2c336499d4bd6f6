"""The command's entry point: block signals first, then everything else.

The first statement blocks every signal the init forwards (and SIGCHLD), so
one that arrives while Python imports the rest, or while trio loads, stays
pending until the receiver is up, and then reaches the workload. Only
``_signal`` (built into the interpreter) is imported before that.

Python's own SIGINT handler may already have seen a SIGINT from the
interpreter's start-up: it raises KeyboardInterrupt at the first chance,
which is caught here and re-sent to the workload once it exists.
"""

_early_sigint = False
while True:
    try:
        import _signal

        _signal.pthread_sigmask(
            _signal.SIG_BLOCK,
            _signal.valid_signals()
            - {
                _signal.SIGKILL,
                _signal.SIGSTOP,
                _signal.SIGFPE,
                _signal.SIGILL,
                _signal.SIGSEGV,
                _signal.SIGBUS,
                _signal.SIGABRT,
                _signal.SIGTRAP,
                _signal.SIGSYS,
            },
        )
        break
    except KeyboardInterrupt:
        # Raised by Python's handler for a SIGINT of the start-up, before or
        # just after the block (pthread_sigmask runs pending handlers): block
        # again, and remember to pass the SIGINT on.
        _early_sigint = True

# Read before anything changes a disposition: what the init inherited as
# ignored stays ignored in the workload.
_INHERITED_IGNORED = frozenset(
    signo
    for signo in _signal.valid_signals() - {_signal.SIGKILL, _signal.SIGSTOP}
    if _signal.getsignal(signo) == _signal.SIG_IGN
)

# An inherited SIGCHLD of SIG_IGN makes the kernel reap children itself, even
# while SIGCHLD is blocked: the workload's status would be lost.
_signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)


def main() -> None:
    """Run the command line; never returns (exits with the init's code)."""
    import posix
    import sys

    from nucleus_trio.cli import run

    code = run(sys.argv[1:], early_sigint=_early_sigint, inherited_ignored=_INHERITED_IGNORED)
    # Everything the init writes is written by now (the log task flushed,
    # or gave up on a stalled stderr). Skipping the interpreter's finalization
    # saves ~25 ms on every container stop: trio's modules are many.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # None when the descriptor was closed at start-up
        except (AttributeError, OSError, ValueError):
            pass
    posix._exit(code)
