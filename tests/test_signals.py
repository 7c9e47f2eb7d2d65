"""Stopping by signal (issue 22): SIGTERM stops a command like Ctrl-C; runners stop their commands; run.json
says how a run ended."""

import glob
import os
import signal
import subprocess
import sys

from libml import files, signals

import pytest
from conftest import ROOT
from guards import python_env, temp_files, wait_for


def test_sigterm_stops_a_writer_and_removes_its_temporary_files(digits):
    command = [
        sys.executable,
        'scripts/make_aug_copy.py',
        '--aug_dataset=digits.1@50',
        '--aug_copy=200',
        '--augment=svhn',
        '--workers=1',
    ]
    proc = subprocess.Popen(command, cwd=ROOT, env=python_env(digits), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: len(temp_files(digits / 'SSL')) >= 2 or proc.poll() is not None, 'temporary files')
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and err.decode().strip().splitlines() == [
        'error: stopped by SIGTERM'
    ]
    assert temp_files(digits / 'SSL') == [] and temp_files(digits) == []
    assert not glob.glob(str(digits / 'SSL' / 'digits_aug200*'))


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_stopping_a_runner_stops_the_command_it_runs(tmp_path, signum):
    pid_file = tmp_path / 'child.pid'
    child = f'import os, time; open({str(pid_file)!r}, "w").write(str(os.getpid())); time.sleep(600)'
    runner = (
        'import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal\n'
        'from absl import app\nfrom libml.tables import steps\nfrom libml.errors import cli_main\n'
        f'app.run(cli_main(lambda argv: steps.run(["-c", {child!r}])))\n'
    )
    proc = subprocess.Popen([sys.executable, '-c', runner], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 'the child')
    child_pid = int(pid_file.read_text())
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert err.decode().strip().splitlines()[-1] == f'error: stopped by {signals_name(signum)}'
    assert not files._alive(child_pid)


def signals_name(signum):
    return {signal.SIGTERM: 'SIGTERM', signal.SIGINT: 'SIGINT (Ctrl-C)'}[signum]


def test_sighup_stops_like_sigterm():
    previous = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    try:
        signals.install()
        with pytest.raises(signals.Stopped) as stopped:
            os.kill(os.getpid(), signal.SIGHUP)
        assert signals.outcome(stopped.value) == 'stopped: SIGHUP'
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
