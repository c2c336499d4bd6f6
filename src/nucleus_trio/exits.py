"""The init's own exit codes, in one place (README, "Exit status").

None of them is ever remapped by ``--remap-exit``. Standard library only:
the start-up path and the crash guard use them.
"""

#: Bad usage: an unknown flag, a bad value, no PROGRAM.
EXIT_USAGE = 2

#: PROGRAM was found but could not be run (permission, not executable).
EXIT_CANNOT_EXECUTE = 126

#: PROGRAM was not found.
EXIT_NOT_FOUND = 127

#: The init failed itself (the crash guard): sysexits' EX_SOFTWARE. No code
#: can be told apart from every workload's, so this one is documented, paired
#: with a traceback on stderr, and never remapped.
EXIT_INTERNAL_ERROR = 70

#: The workload's status was taken by someone else (never on the command
#: line, where the init owns every child; possible with run_command).
EXIT_STATUS_LOST = 255
