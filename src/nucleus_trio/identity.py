"""``--user`` and ``--groups``: resolving names to the workload's identity.

Standard library only (``pwd`` and ``grp`` are C modules): it runs before the
spawn. Lookups are parameters so tests can call it without a passwd database.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


class IdentityError(ValueError):
    """A user or group that cannot be resolved; the message is for the user."""


class Identity:
    """The uid, gid and exact supplementary groups the workload runs with."""

    __slots__ = ("gid", "groups", "uid")

    uid: int | None
    gid: int | None
    groups: tuple[int, ...]

    def __init__(self, uid: int | None, gid: int | None, groups: Sequence[int]) -> None:
        object.__setattr__(self, "uid", uid)
        object.__setattr__(self, "gid", gid)
        object.__setattr__(self, "groups", tuple(groups))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Identity is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Identity is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and (self.uid, self.gid, self.groups) == (
            other.uid,
            other.gid,
            other.groups,
        )

    def __hash__(self) -> int:
        return hash((self.uid, self.gid, self.groups))

    def __repr__(self) -> str:
        return f"Identity(uid={self.uid}, gid={self.gid}, groups={self.groups})"


def _user_by_name(name: str) -> tuple[int, int] | None:
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _user_by_id(uid: int) -> tuple[int, int] | None:
    import pwd

    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _group_by_name(name: str) -> int | None:
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 10:
        value = int(text)
        if value <= _MAX_ID:
            return value
        raise IdentityError(f"id out of range: {text!r}")
    return None


def resolve_identity(
    user: str | None,
    groups: Sequence[str] | None,
    *,
    user_by_name: Callable[[str], tuple[int, int] | None] = _user_by_name,
    user_by_id: Callable[[int], tuple[int, int] | None] = _user_by_id,
    group_by_name: Callable[[str], int | None] = _group_by_name,
) -> Identity | None:
    """Resolve ``--user USER[:GROUP]`` and ``--groups G,...`` to numbers.

    Without GROUP the user's primary group comes from the passwd database,
    and a user with no entry there is an error. With ``--user`` the
    supplementary groups are exactly ``groups`` (none by default). Returns
    ``None`` when neither is given.
    """
    if user is None and groups is None:
        return None

    def group_id(text: str) -> int:
        if not text:
            raise IdentityError("empty group name")
        number = _number(text)
        if number is not None:
            return number
        found = group_by_name(text)
        if found is None:
            raise IdentityError(f"unknown group {text!r}")
        return found

    supplementary = tuple(group_id(name) for name in groups) if groups is not None else ()
    if user is None:
        return Identity(None, None, supplementary)
    name, colon, group = user.partition(":")
    if not name:
        raise IdentityError(f"--user needs a user, got {user!r}")
    number = _number(name)
    entry = user_by_id(number) if number is not None else user_by_name(name)
    if entry is None and number is None:
        raise IdentityError(f"unknown user {name!r}")
    uid = number if number is not None else entry[0] if entry is not None else 0
    if colon:
        gid = group_id(group)
    elif entry is not None:
        gid = entry[1]
    else:
        raise IdentityError(
            f"user {name!r} has no passwd entry: give the group too (--user {name}:GROUP)"
        )
    return Identity(uid, gid, supplementary)
