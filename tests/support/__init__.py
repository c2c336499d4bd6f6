"""What the tests share, by concern (each module imports only those above it):

- :mod:`tests.support.procfs`: the ``/proc`` readers and checks (children,
  descendants, zombies, states, status fields, signal masks, the processes
  the stress harness tagged) and :func:`~tests.support.procfs.wait_for`
  (every wait bounded);
- :mod:`tests.support.launch`: the real command launched by a test
  (:func:`~tests.support.launch.start_init` and
  :func:`~tests.support.launch.launch`, which yield the one wrapper,
  :class:`~tests.support.launch.Init`), its one clean-up by PID
  (:func:`~tests.support.launch.kill_session`), the line reader
  :class:`~tests.support.launch.Lines`, and the init's start-up read from
  ``/proc`` (its first line run, trio's signal receiver up);
- :mod:`tests.support.library`: what the library tests share (this process's
  children and their clean-up, command lines, pipes read under trio or
  asyncio, the subreaper flag, ``BOTH`` backends, the ``no_new_zombies``
  fixture).

``procfs`` and ``launch`` are standard library only: the stress suite imports
them too. This module imports nothing, so importing one of them never loads
the others.
"""
