"""Bad input from the user, and how every script shows it: one line `error: ...`, exit code 1."""

import functools
import re
import sys

from libml import signals


class UserError(Exception):
    """Bad input from the user. Scripts print its message on one line and exit 1."""


def cli_main(main):
    """Wraps an absl `main(argv)` so a `UserError` prints `error: <message>` and exits 1.

    Also turns the common operating-system failures (missing file, no permission, full disk)
    into the same one-line form instead of a traceback. SIGTERM and SIGHUP stop the command
    like Ctrl-C (its temporary files are removed): `error: stopped by SIGTERM`, exit 128 + the
    signal number. File names that are not UTF-8 are printed with backslash escapes.
    """

    @functools.wraps(main)
    def wrapped(argv):
        signals.install()
        sys.stdout.reconfigure(errors='backslashreplace')
        try:
            return main(argv)
        except UserError as e:
            _die(str(e))
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            _die(f'{e.strerror}: {e.filename}')
        except OSError as e:
            if e.errno is not None and e.strerror:
                _die(f'{e.strerror}' + (f': {e.filename}' if e.filename else ''))
            raise
        except (KeyboardInterrupt, signals.Stopped) as e:
            signum = signals.signal_of(e)
            _die(f'stopped by {signals.name(signum)}', 128 + signum)

    return wrapped


def _die(message, code=1):
    print(f'error: {message}', file=sys.stderr, flush=True)
    sys.exit(code)


def warn(message):
    """Prints `warning: <message>` on stderr."""
    print(f'warning: {message}', file=sys.stderr, flush=True)


_FRAMING = re.compile(r'^(\s|Graph execution error:|Detected at node|<stack traces unavailable>|$)')


def first_line(error):
    """The gist of an exception for a one-line message: its first line that says something (not
    TensorFlow's graph-error framing), without TensorFlow's op and function names (`{{...}}`,
    `[Op:...]`); the exception's type when that leaves nothing."""
    message = (getattr(error, 'message', None) or str(error) or type(error).__name__).strip()
    lines = [line for line in message.splitlines() if not _FRAMING.match(line)]
    message = re.sub(r'\{\{.*?\}\}|\[Op:.*$', '', lines[0] if lines else '').strip()
    return message or type(error).__name__
