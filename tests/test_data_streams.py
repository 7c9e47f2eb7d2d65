"""Training streams: the memory budget, the window layout of streamed files, late resumes (libml/data/streams.py)."""

import os

from libml.data import names as datanames
from libml.data.dataset import DataSet
from libml.data.streams import DEFAULT_CACHE_MB, WindowLayout, available_memory_mb

import numpy as np
import pytest
from test_data_dataset import (
    NCLASS,
    build_dataset,
    bytes_read,
    index_of,
    take_images,
    window_order,
)


def test_default_cache_is_half_the_available_memory(tiny):
    with open('/proc/meminfo') as f:
        available = next(int(line.split()[1]) for line in f if line.startswith('MemAvailable:')) >> 10
    assert abs(available_memory_mb() - available) < 0.1 * available + 64
    assert DataSet.from_name('tiny.1@50-10').cache_mb == DEFAULT_CACHE_MB


def test_streamed_order_follows_the_window_layout(ml_data):
    # 220 records: 200 labelled (label i % 10), 20 unlabelled; 10 held out for validation (round
    # robin: records 0..9) leave 190 training records 10..199. shuffle_buffer=130: blocks of 3
    # records, 43 blocks (129 records) per window, 63 whole blocks + a short one of 1 record.
    build_dataset(str(ml_data), n_train=220, n_unlabelled=20)
    ds = DataSet.from_records(
        'tiny-10', datanames.train_path('tiny'), datanames.test_path('tiny'), 10, cache_mb=0, shuffle_buffer=130
    )
    layout = WindowLayout(190, 130)
    assert (layout.block, layout.per_window, layout.full, layout.blocks, layout.windows) == (3, 43, 63, 64, 2)
    images, labels = take_images(ds.train_labelled(10, seed=4), 3 * 190)
    served = np.array([index_of(x) for x in images])
    np.testing.assert_array_equal(served, 10 + window_order(190, 130, 4, 3))
    assert labels.tolist() == [i % NCLASS for i in served]
    for e in range(3):  # every epoch serves every training record once
        assert sorted(served[e * 190 : (e + 1) * 190]) == list(range(10, 200))


@pytest.mark.skipif(not os.path.exists('/proc/self/io'), reason='needs Linux /proc/self/io')
def test_late_resume_of_a_streamed_file_reads_about_one_window(ml_data):
    build_dataset(str(ml_data), n_train=220, n_unlabelled=20)
    path = datanames.train_path('tiny')
    ds = DataSet.from_records('tiny-10', path, datanames.test_path('tiny'), 10, cache_mb=0, shuffle_buffer=20)
    start = 5 * 190 + 17  # 5 epochs and 17 images
    take_images(ds.train_labelled(8, seed=2, start=start), 8)  # AutoGraph reads sources the first time only
    before = bytes_read()
    resumed, resumed_labels = take_images(ds.train_labelled(8, seed=2, start=start), 8)
    read = bytes_read() - before
    # windows of 20 records: the resumed stream reads the window holding `start`, the next one and
    # what the prefetch buffers hold, far less than one epoch (the file) and 5 epochs of a replay.
    assert read < os.path.getsize(path)
    stream, labels = take_images(ds.train_labelled(8, seed=2), start + 8)
    np.testing.assert_array_equal(resumed, stream[start:])
    np.testing.assert_array_equal(resumed_labels, labels[start:])
