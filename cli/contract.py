"""The command line's error contract, in one place.

    0    done
    2    bad input, found before the job: one sentence on stderr, nothing written
    1    the job failed while running: one sentence on stderr, which names the log file that holds
         the details (the traceback)
    130  interrupted

``main.py`` parses with :class:`Parser` (an argparse error is one line and a pointer to ``--help``)
and runs every subcommand through :func:`run`, which turns whatever escapes a command into one
line: an error whose text is written for the user (:data:`USER_ERRORS`) is bad input, anything
else is unexpected (exit 1, the traceback in the log). The commands themselves check what they
can before the job (:func:`check_out`, :func:`check_new_folder`) and say
which phase failed with :func:`fail`.

Text arguments (the prompts) are checked by :func:`backend.requests.check_text`, the same check
every request makes.

The log is ``cli.log`` in the platform's user log folder (``~/.local/state/latent-studio/log`` on
Linux): while a command runs, Python's logging (the engine's log entries, warnings) goes there, not
to the terminal.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

from backend.errors import BackendError
from canvas.errors import DocumentError
from operations.spec import NothingToDo

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# Errors whose text is one sentence for the user: raised before a job, they are bad input.
USER_ERRORS = (BackendError, DocumentError, NothingToDo)

log = logging.getLogger("latent_studio.cli")


class Parser(argparse.ArgumentParser):
    """argparse, with each error as one line that points to ``--help`` (exit 2); subcommands'
    parsers are of this class too (``add_subparsers`` makes them with the parent's class)."""

    def error(self, message: str):
        fail(f"{one_line(message)} (see `{self.prog} --help`).")
        sys.exit(EXIT_BAD_INPUT)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def fail(message: str, code: int = EXIT_BAD_INPUT, details: str = "") -> int:
    """Says ``message`` as one line on stderr and returns ``code``. With ``details`` (a traceback), they
    go to the log file and the line says where."""
    message = one_line(message)
    if details:
        where = log_details(message, details)
        if where is not None:
            if "details are in the log" in message:
                message = message.replace("details are in the log", f"details are in {where}")
            else:
                message = f"{message.rstrip('.')} (details: {where})."
    print(f"error: {message}", file=sys.stderr)
    return code


def log_file() -> Path:
    """``cli.log`` in the user log folder (created when first written)."""
    import platformdirs

    return Path(platformdirs.user_log_dir("latent-studio")) / "cli.log"


def log_details(message: str, details: str) -> Path | None:
    """Appends ``message`` and ``details`` to the log file; its path, or None when it cannot be written."""
    import time

    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR {message}\n{details.rstrip()}\n")
    except OSError:
        return None
    return path


class _LogFileHandler(logging.FileHandler):
    """Opens (and makes the folder of) the log file at the first entry; a log that cannot be written
    stays silent rather than print to the terminal."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def handleError(self, record) -> None:
        pass


@contextlib.contextmanager
def logging_to_file():
    """While a command runs, log entries and warnings go to the log file, never to the terminal
    (Python's last-resort handler would print a library's traceback there)."""
    root = logging.getLogger()
    handler = _LogFileHandler(log_file(), encoding="utf-8", errors="backslashreplace", delay=True)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()


def run(func, args) -> int:
    """Runs one subcommand under the contract: what escapes it becomes one line and an exit code."""
    with logging_to_file():
        try:
            return func(args)
        except USER_ERRORS as exc:
            return fail(str(exc), EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            return fail("interrupted; nothing was written.", EXIT_INTERRUPTED)
        except MemoryError:
            return fail("There is not enough memory for this command: close other programs, or use smaller "
                        "images.", EXIT_FAILED, traceback.format_exc())
        except Exception as exc:
            return fail(f"Something unexpected went wrong ({type(exc).__name__}: {one_line(exc)[:200]}); details are "
                        "in the log.", EXIT_FAILED, traceback.format_exc())


# --- checks before the job ----------------------------------------------------------------------

class BadArgument(BackendError):
    """A command-line argument that cannot work, found before anything is read."""


def check_out(out: str, suffixes: tuple[str, ...] = (".png", ".ora")) -> Path:
    """``--out``: a file name with one of ``suffixes``, not a folder, in a folder that exists and can be
    written to (tried with a temporary file of the name atomic saves use, removed at once)."""
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        raise BadArgument(f"--out {out} is a folder: give a file name ending in {' or '.join(suffixes)}.")
    if path.suffix.lower() not in suffixes:
        raise BadArgument(f"--out {path.name} must end in {' or '.join(suffixes)}.")
    folder = path.parent
    if not folder.is_dir():
        raise BadArgument(f"The folder {folder} does not exist: create it or choose another --out.")
    check_folder_writable(folder, path.name, "--out")
    return path


def check_out_names(paths) -> None:
    """The output files a job will write: none of them may be a folder."""
    for path in paths:
        if Path(path).is_dir():
            raise BadArgument(f"{path} is a folder, so the result cannot be written there: choose another --out.")


def check_folder_writable(folder: Path, name: str, flag: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise BadArgument(f"The folder {folder} cannot be written to ({exc.strerror or exc}): choose another folder "
                          f"for {flag}.") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_new_folder(folder: str, flag: str) -> None:
    """A folder a command will create or write into (``--save-previews DIR``): not a file, and the
    nearest existing folder on its path can be written to. Creates nothing."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise BadArgument(f"{flag} {folder} is a file, not a folder: choose a folder name.")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise BadArgument(f"{flag} {folder} is inside {existing}, which is a file: choose another folder.")
    check_folder_writable(existing, "preview.png", flag)


def print_path(path) -> None:
    """Prints a written file's path on stdout, whatever bytes its name holds."""
    try:
        print(path)
    except UnicodeEncodeError:  # a name that is not UTF-8 (surrogate-escaped): its bytes as they are
        sys.stdout.flush()
        sys.stdout.buffer.write(os.fsencode(str(path)) + b"\n")
        sys.stdout.flush()
