"""Dataset builders: upstream archives and image folders -> images and labels ready to write.

Each builder returns a `common.Built` (per split an iterable of (uint8 image [H, W, C], label)
pairs and its count, the class names, extra JSON files); `writer.write_dataset` turns it into
`<name>-<split>.tfrecord` files, `<name>_class_mappings.json` and the extras.

- `download`: where upstream files come from (--archive_dir, or a resumable download).
- `tarmat`: members of tar archives and MATLAB files, with one-line errors.
- `cifar`, `svhn`, `stl10`, `idx` (MNIST, Fashion-MNIST), `digits`: the built-in datasets.
- `folders`: custom image folders, with class balancing and random erasing.
- `writer`: record files, class mapping, counts per class.

Nothing here reads command-line flags; only `writer` uses TensorFlow (for the record files).
"""
