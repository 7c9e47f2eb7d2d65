"""scripts/extract_accuracy.py."""

import json
import os
import shutil
import subprocess
import sys

from libml.report import events

from conftest import ROOT
from guards import python_env


def test_extract_accuracy_reads_a_run_folder_whose_name_is_not_utf8(trained, tmp_path):
    _, run_dir, _ = trained
    copy = os.path.join(str(tmp_path), os.fsdecode(b'r\xe9n'))
    shutil.copytree(run_dir, copy)
    proc = subprocess.run(
        [sys.executable, 'scripts/extract_accuracy.py', copy], cwd=ROOT, capture_output=True, env=python_env(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    last = events.read_scalars(os.path.join(run_dir, 'tf'), 'accuracy_test')[-1][1]
    assert json.loads(open(os.path.join(copy, 'stats', 'accuracy.json')).read())['last01'] == last
