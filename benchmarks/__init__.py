"""The benchmarks of nucleus-trio, run from the repository's root.

- ``python -m benchmarks`` (``make bench``): nucleus-trio against tini,
  dumb-init and catatonit, as root; results in ``results/latest.md``,
  ``latest.json`` and ``latest.png``;
- ``python -m benchmarks.fanout`` (``make bench-fanout``): a fan-out of short
  processes through the supervisor against ``trio.run_process``;
- ``python -m benchmarks.sandbox`` (``make bench-sandbox``): the time to start
  a sandbox and run ``true`` in it, against ``unshare`` and ``podman run``.

The modules of ``python -m benchmarks``, each importing only those above it:

- :mod:`benchmarks.procfs`: what the harness reads in ``/proc`` (children,
  CPU time, ``status`` fields, context switches);
- :mod:`benchmarks.harness`: the paths, ``BenchError``,
  :class:`~benchmarks.harness.Session` (an init started through the gate of
  ``launch``), the subreaper, every process killed on the way out,
  ``rotated``, ``settle``;
- :mod:`benchmarks.install`: the set-up: the peers from Debian's packages,
  the C workloads compiled, nucleus-trio installed into ``build/venv``, the
  single-file build;
- :mod:`benchmarks.machine`: the machine, its load and the revision a run is
  recorded with (shared with ``fanout`` and ``sandbox``);
- :mod:`benchmarks.model`: ``Params`` (the sizes of a run), ``Raw`` (every
  sample) and the names of the inits;
- :mod:`benchmarks.phases`: start and shutdown latency, ``INIT -- true``, the
  inits side by side (RSS, idle, signals), the signal path stage by stage;
- :mod:`benchmarks.reaping`: the storm of orphans and the burst of zombies;
- :mod:`benchmarks.early`: SIGTERM just after the exec of the init;
- :mod:`benchmarks.rows`: the table's rows, one small function per section;
- :mod:`benchmarks.report`: the Markdown table, the signal section, the
  chart and the JSON;
- :mod:`benchmarks.__main__`: the command line and the order of the phases.

:mod:`benchmarks.signal_profile` is loaded into the profiled forwarders too,
as a top-level module: it imports the standard library alone. The package
itself imports nothing.
"""
