"""User errors and the boundary that turns them into one line on stderr for the ``lvm`` commands."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = [
    "CommandParser",
    "CorruptFileError",
    "NoSpaceError",
    "UnsafeFileError",
    "UsageError",
    "debug_requested",
    "is_user_error",
    "one_line",
    "run_command",
]


class CorruptFileError(ValueError):
    """A file exists but cannot be read as what it should be (truncated, corrupt, or of another kind)."""


class UnsafeFileError(ValueError):
    """A file would run code if loaded: it needs more than ``torch.load(weights_only=True)`` allows."""


class NoSpaceError(OSError):
    """The disk filled up while lvm wrote a file; what was there before is intact."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class UsageError(ValueError):
    """A command-line argument the parser rejected (unknown option, missing value, bad type)."""


class CommandParser(argparse.ArgumentParser):
    """An ``argparse`` parser whose errors raise :class:`UsageError` (one line) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


#: Exceptions that mean "the user asked for something wrong"; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ImportError,
    NoSpaceError,
    argparse.ArgumentError,
)

#: User errors of libraries that ``lvm.errors`` does not import (importing Lightning would slow
#: ``lvm --help``), recognised by a class name in their MRO: Lightning's bad trainer settings
#: (``max_epochs -5``) and a config file that is not valid YAML.
_USER_ERROR_NAMES = frozenset({"MisconfigurationException", "YAMLError"})

_WRAPPERS = ("Does not validate against any of the Union subtypes", "Problem with given class_path")


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` is among ``argv`` or ``$LVM_DEBUG`` is set (not 0/empty), and ``argv`` without it."""
    env = os.environ.get("LVM_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    rest = [a for a in argv if a != "--debug"]
    return env or len(rest) != len(argv), rest


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and its causes, outermost first (``__cause__``, else ``__context__`` for re-raises)."""
    out: list[BaseException] = []
    while err is not None and all(err is not e for e in out):
        out.append(err)
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return out


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` means "the user asked for something wrong" (one line, exit 2) rather than a bug."""
    return isinstance(err, USER_ERRORS) or any(c.__name__ in _USER_ERROR_NAMES for c in type(err).__mro__)


def _yaml_message(err: BaseException) -> str | None:
    """``file, line L, column C: problem`` for a YAML syntax error (PyYAML's ``MarkedYAMLError``)."""
    mark = getattr(err, "problem_mark", None)
    if mark is None or not hasattr(mark, "line"):
        return None
    context = getattr(err, "context", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}"
    problem = getattr(err, "problem", None) or "syntax error"
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def one_line(err: BaseException) -> str:
    """The message a user needs from ``err``, on one line: the first of its chain that is not a wrapper.

    Parsers wrap the real complaint: jsonargparse's "Does not validate against any of the Union
    subtypes" lists it in the middle of a dump of the config, and "Parser key "model.x":" names
    the key above it; the message is the first exception of the chain (outermost first) that is
    not such a wrapper, prefixed with the key when it does not name it.
    """
    chain = _chain(err)
    for e in chain:
        text = _yaml_message(e)
        if text is not None:
            return text
    key = None
    chosen = chain[-1]
    for e in chain:
        text = str(e).strip()
        found = re.match(r'Parser key "([^"]+)":', text)
        if found:
            key = key or found.group(1)
            rest = text[found.end() :].strip()
            if rest and not rest.startswith(_WRAPPERS) and e is chain[-1]:
                chosen = e
                break
            continue
        if text and not text.startswith(_WRAPPERS):
            chosen = e
            break
    text = str(chosen).strip()
    found = re.match(r'Parser key "([^"]+)":', text)
    if found:
        text = text[found.end() :]
    text = re.sub(r"^Call to compute_fn of link .*? failed: ", "", text.strip(), flags=re.S)
    if isinstance(chosen, KeyError) and text.startswith(("'", '"')) and text.endswith(("'", '"')):
        text = text[1:-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = " ".join(lines) if lines else type(chosen).__name__
    if key and key not in message:
        message = f"{key}: {message}"
    return message


def run_command(prog: str, fn: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run ``fn(argv)``; a user error prints ``<prog>: error: <message>`` and a hint, and returns 2.

    ``--debug`` in ``argv`` or ``LVM_DEBUG=1`` lets the exception through with its traceback.
    """
    debug, argv = debug_requested(argv)
    if debug:
        return fn(argv)
    try:
        return fn(argv)
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        if isinstance(err, (UsageError, argparse.ArgumentError)) or type(err).__name__ == "ArgumentError":
            hint = f"{prog} --help lists the options; --debug shows the traceback"
        else:
            hint = "--debug (or LVM_DEBUG=1) shows the traceback"
        print(f"hint: {hint}", file=sys.stderr)
        return 2
