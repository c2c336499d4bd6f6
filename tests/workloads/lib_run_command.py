"""``trio.run(nucleus_trio.run_command, ARGS)``; exits with what it returns."""

import sys

import trio

from nucleus_trio import run_command

sys.exit(trio.run(run_command, sys.argv[1:]))
