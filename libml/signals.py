"""Stopping by signal: SIGTERM (and SIGHUP) end a command like Ctrl-C does, cleanly.

Python turns Ctrl-C (SIGINT) into KeyboardInterrupt, so `finally` blocks run: temporary files
are removed, run.json records how the run ended. SIGTERM (`kill PID`) and SIGHUP (the terminal
closed) would end the process at once without any of that; `install` makes them raise `Stopped`
instead. Children started by `child` get the signal that stopped their parent.
"""

import contextlib
import os
import signal
import subprocess

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """The process got SIGTERM or SIGHUP (`signum`). A BaseException, like KeyboardInterrupt."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def install():
    """SIGTERM and SIGHUP raise `Stopped` in the main thread (signals a parent set to ignore stay ignored)."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _raise_stopped)


def signal_of(error):
    """The signal number behind a `Stopped` or KeyboardInterrupt, else None."""
    if isinstance(error, Stopped):
        return error.signum
    return signal.SIGINT if isinstance(error, KeyboardInterrupt) else None


def name(signum):
    """'SIGTERM', 'SIGHUP', 'SIGINT (Ctrl-C)'."""
    return signal.Signals(signum).name + (' (Ctrl-C)' if signum == signal.SIGINT else '')


def outcome(error):
    """One line saying how a run ended on `error`: 'stopped: SIGTERM', 'stopped: SIGINT (Ctrl-C)', 'failed: ...'."""
    signum = signal_of(error)
    if signum is not None:
        return f'stopped: {name(signum)}'
    text = str(error).strip()
    return f'failed: {text.splitlines()[0] if text else type(error).__name__}'


@contextlib.contextmanager
def held():
    """Delays SIGINT, SIGTERM and SIGHUP until the block ends (a status write is not cut in half)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def end_group(proc, signum, grace=30):
    """Sends `signum` to the process group of `proc` (started by `child`), then SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def child(args, **popen_options):
    """Yields `subprocess.Popen(args, ...)` in a process group of its own, ended when the block fails.

    Ctrl-C at the terminal reaches this process only; when the block ends by an exception (the
    KeyboardInterrupt of Ctrl-C, `Stopped` by `kill`, an error), the child's whole group gets
    the same signal (SIGTERM for an error), so it stops as if it had been sent it directly.
    """
    proc = subprocess.Popen(args, start_new_session=True, **popen_options)
    try:
        yield proc
    except BaseException as e:
        if proc.poll() is None:
            end_group(proc, signal_of(e) or signal.SIGTERM)
        raise
    finally:
        if proc.stdout:
            proc.stdout.close()
