"""Scalars and times read back from event files (libml/report/events.py)."""

import os


def test_training_cpu_seconds_sums_each_sessions_last_report(tmp_path):
    from libml.report.events import training_cpu_seconds

    import tensorflow as tf

    def session(folder, reports):
        writer = tf.summary.create_file_writer(str(folder))
        with writer.as_default():
            for step, tags in reports:
                for tag, value in tags.items():
                    tf.summary.scalar(tag, value, step=step)
        writer.close()

    cpu = 'monitors/process_cpu_s'
    session(tmp_path, [(1024, {'accuracy_test': 50.0, cpu: 3.0}), (2048, {'accuracy_test': 60.0, cpu: 7.5})])
    session(tmp_path, [])  # killed before its first report
    session(tmp_path, [(3072, {'accuracy_test': 61.0, cpu: 2.0})])
    assert len(os.listdir(tmp_path)) == 3
    assert training_cpu_seconds(str(tmp_path)) == 9.5
    session(tmp_path, [(4096, {'accuracy_test': 62.0})])  # a session from before the tag: unknown
    assert training_cpu_seconds(str(tmp_path)) is None
