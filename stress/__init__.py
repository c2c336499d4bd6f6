"""The stress, soak, fault and bad-input suite of nucleus-trio.

Runs the real ``nucleus-trio`` command (as PID 1 of a fresh PID namespace and
as a subreaper) under the loads, faults and inputs that break inits, and
measures it from outside through ``/proc``: the harness polls, the init never
has to. The storm workload is a small C program (``ntw.c``), compiled at run
time into ``stress/build/``.

Scenarios (each a function that takes its size and returns a dict of figures,
with the broken invariants listed under ``"failures"``):

- :func:`stress.storms.zombie_storm`: N double-forked orphans as fast as the
  workload forks;
- :func:`stress.storms.signal_storm`: N signals of mixed kinds sent to the
  init in a burst while orphans are being made and reaped;
- :func:`stress.storms.stop_cont`: the init stopped (SIGSTOP) and continued
  mid-storm, with signals sent while it is stopped;
- :func:`stress.stdio.stdio_faults`: a workload that closes or floods stdout
  and stderr, an init whose stdout and stderr are closed or a full pipe
  nobody reads;
- :func:`stress.soak.soak`: a workload forking short-lived children and
  daemons for S seconds while signals arrive at random: RSS, descriptors and
  threads;
- :func:`stress.fuzz.bad_inputs` and :func:`stress.fuzz.fuzz_cli`: the command
  line with bad arguments and environments, from a fixed table and at random.

Modules, each importing only those above it:

- :mod:`stress.procfs`: the ``/proc`` readers, :func:`~stress.procfs.wait_until`
  (every wait bounded), ``Figures`` and ``StressError``;
- :mod:`stress.harness`: the workload's build, the init launched under the
  harness (:func:`~stress.harness.launch`), its report lines, the signals
  sent, every process killed by PID on the way out;
- :mod:`stress.storms`, :mod:`stress.stdio`, :mod:`stress.soak`: the
  scenarios (``soak`` also holds :func:`~stress.soak.exercise`, which
  tests/test_faults.py runs under its faults);
- :mod:`stress.oracle`: what the spec says a command line must end with, one
  run of it, what is wrong with the run;
- :mod:`stress.fuzz`: the table of bad inputs and the fuzzer;
- :mod:`stress.report`: the summary table, the JSON, the table of bad inputs;
- :mod:`stress.suite`: the short and long modes' sizes, every scenario run;
- :mod:`stress.__main__`: the command line, ``python -m stress``.

Standard library, the package, and the tests' ``/proc`` readers
(:mod:`tests.support.procfs`, through :mod:`stress.procfs`; run from the
repository's root, where ``tests`` is a package). Every process started is
killed by PID in a ``finally``; every wait is bounded. The package itself imports
nothing: the tests import the modules they need, never the command line.
"""
