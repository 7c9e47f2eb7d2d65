"""realmix's library: data, models, the maths of every algorithm and the one training loop.

Importing it silences TensorFlow's C++ start-up notices (CUDA probing, CPU features), which
are printed before TensorFlow's own log level applies; scripts import `libml` before they
use TensorFlow, so that happens in this one place.
"""

import os
import sys


def _failed_restore_echo(record):
    """False for the lines TensorFlow logs when it collects a checkpoint that failed to restore.

    Every restore here either succeeds (with expect_partial) or ends in a one-line error already;
    TensorFlow then lists every unrestored value, two lines each, when the process exits.
    """
    return not (record.funcName == '__del__' and record.filename == 'checkpoint.py')


def quiet_tensorflow():
    """Imports TensorFlow without its C++ start-up chatter on stderr.

    TensorFlow prints oneDNN and 'no CUDA driver' notices while it loads, before its log
    level applies. This sets TF_CPP_MIN_LOG_LEVEL and turns on oneDNN's CPU kernels
    (TF_ENABLE_ONEDNN_OPTS; explicit values win, and subprocesses inherit both), and silences
    file descriptor 2 only while the import and the device discovery run.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    # oneDNN's CPU kernels: 1.6x the RealMix step's img/s of TensorFlow's default CPU kernels on a
    # 2-core AMD EPYC (docs/speed.md). TF_ENABLE_ONEDNN_OPTS=0 in the environment turns them off.
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    if 'tensorflow' in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    missing = None
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.get_logger().setLevel('WARNING')  # e.g. the checkpoint saver's per-save INFO line
        tf.get_logger().addFilter(_failed_restore_echo)
    except ModuleNotFoundError as e:
        missing = e.name
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    if missing:  # e.g. ./realmix.py run by the system's python3, outside the project's virtual environment
        sys.exit(
            f'error: {missing} is not installed for {sys.executable}: run `make venv` and `. .venv/bin/activate` '
            '(or `pip install -r requirements.txt`)'
        )


quiet_tensorflow()
