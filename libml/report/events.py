"""Reading scalar summaries back from TensorBoard event files."""

import glob
import os
import sys

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2


def _events(path):
    """The events of one file; a truncated or corrupt tail (a killed run) ends the file with a warning."""
    try:
        for raw in tf.data.TFRecordDataset(os.fsencode(path)).as_numpy_iterator():  # bytes: any file name
            yield event_pb2.Event.FromString(raw)
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, DecodeError) as e:
        print(
            f'warning: {path} is truncated or corrupt after its readable events ({type(e).__name__}); using those',
            file=sys.stderr,
        )


def read_scalars(folder, tag):
    """[(step, value)] of scalar `tag` over every events file in `folder`, sorted by step.

    A later write for the same step (a resumed run re-reporting it) replaces the earlier one.
    """
    values = {}
    for path in sorted(glob.glob(os.path.join(folder, 'events*'))):
        for event in _events(path):
            for value in event.summary.value:
                if value.tag != tag:
                    continue
                if value.HasField('tensor'):
                    values[event.step] = float(tf.make_ndarray(value.tensor))
                else:
                    values[event.step] = float(value.simple_value)
    return sorted(values.items())


def training_seconds(folder):
    """Seconds a run spent training: per events file (one per session), its first to last event, summed."""
    total = 0.0
    for path in glob.glob(os.path.join(folder, 'events*')):
        times = [event.wall_time for event in _events(path)]
        total += max(times) - min(times) if times else 0.0
    return total


CPU_TAG = 'monitors/process_cpu_s'  # CPU seconds (user + system, every thread) of a session's process so far


def training_cpu_seconds(folder, tag=CPU_TAG):
    """CPU seconds a run's processes spent up to their last reports: each session's last `tag`, summed.

    A session (events file) that reported nothing adds 0; None when one reported without `tag`
    (written before the tag existed: its CPU time is unknown).
    """
    total = 0.0
    for path in glob.glob(os.path.join(folder, 'events*')):
        last, reported = None, False
        for event in _events(path):
            for value in event.summary.value:
                reported |= value.tag == 'accuracy_test'
                if value.tag == tag:
                    last = value
        if last is not None:
            total += float(tf.make_ndarray(last.tensor)) if last.HasField('tensor') else last.simple_value
        elif reported:
            return None
    return total
