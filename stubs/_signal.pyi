# The C module behind `signal`: the same functions and constants, without the
# enum wrappers. The init imports it directly on its start-up path.
from signal import *  # noqa: F403
