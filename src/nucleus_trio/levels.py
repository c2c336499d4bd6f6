"""Log levels: importable before trio (the audit module needs trio and attrs)."""

ERROR = 0
WARNING = 1
INFO = 2
DEBUG = 3
