"""The `DataSet`: one experiment's record files and their tf.data pipelines (augmented, batched)."""

from libml.data import augment as augment_lib
from libml.data import checks, records
from libml.data.names import class_mapping_path, load_class_names, parse_dataset_name, split_paths, test_path
from libml.data.records import check_record_file, record_decoder, scan_records
from libml.data.streams import DEFAULT_CACHE_MB, DEFAULT_SHUFFLE_BUFFER, EndlessStream, Part, cache_plan
from libml.errors import UserError
from libml.files import read_json

import numpy as np
import tensorflow as tf


def to_model_range(image):
    """[0, 1] -> [-1, 1], the model's input range."""
    return image * 2.0 - 1.0


def augmented(function, index, image, seed, view):
    """uint8 image [H, W, C] -> float32 [H, W, C] in [-1, 1], augmented by `function` seeded by (seed, view, index)."""
    seeds = tf.stack([tf.constant(seed * 31 + view, tf.int64), index])
    return to_model_range(function(tf.image.convert_image_dtype(image, tf.float32), seeds))


def eval_batches(part, shape, batch):
    """Finite batches (images [B, H, W, C] in [-1, 1], labels [B]) of a `Part`'s records, un-augmented, in order."""
    decode = record_decoder(part.path, shape)

    def model_input(raw):
        image, label = decode(raw)
        return to_model_range(tf.image.convert_image_dtype(image, tf.float32)), label

    ds = part.sequential().map(model_input, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def balanced_holdout(labels, valid):
    """Record numbers (sorted) of `valid` labelled records taken round-robin over the classes.

    labels: int [N] in file order (-1 = unlabelled). The k-th record of every class (in file
    order) comes before the (k+1)-th of any; within a rank, lower class ids first. A class that
    runs out is skipped.
    """
    labelled = np.flatnonzero(np.asarray(labels) >= 0)
    classes = np.asarray(labels)[labelled]
    rank = np.zeros(len(labelled), np.int64)
    for c in np.unique(classes):
        rank[classes == c] = np.arange(np.sum(classes == c))
    return np.sort(labelled[np.lexsort((classes, rank))[:valid]])


class DataSet:
    """The files of one experiment and their tf.data pipelines.

    Attributes: `name` (str), `shape` (H, W, C), `nclass`, `class_names`, `train_labels`
    (labels of the labelled training images), `test_labels`, `unlabel_count` and the record files.

    Validation comes from the head of the unlabel file (SSL splits: its first `valid` records
    are held-out labelled images) or, with `valid_from_label_file`, from `valid` labelled records
    of the label file taken round-robin over the classes (the baselines' `<name>-<valid>` form;
    `balanced_holdout`), never trained on.

    Training pipelines are infinite, seeded and resumable: element i of the stream is a training
    record chosen by (seed, i) and augmented with a seed derived from (seed, view, i); `start` =
    images already drawn, so a resumed run continues exactly the sequence of an uninterrupted one.
    A training file whose decoded images fit in `cache_mb` MiB (shared by the labelled and the
    unlabelled file, labelled first) is decoded once into memory and epoch e serves record
    `perm_e(i mod N)`, perm_e a stateless permutation seeded by (seed, e); a larger file is
    streamed from disk in the order of `WindowLayout` with windows of `shuffle_buffer` records.
    From 65,536 records on, the decoded images are also cached on disk beside their file, for
    later starts (`libml.data.image_cache`).

    Pipelines fail on a defective record (no image, another size) with an error naming the
    file: iterate them inside `pipeline_errors()` to get it as a one-line UserError.
    """

    def __init__(
        self,
        name,
        label_file,
        test_file,
        unlabel_file=None,
        valid=0,
        valid_from_label_file=False,
        class_mapping=None,
        nclass=None,
        img_size=None,
        augment='none',
        clean_head=0,
        cache_mb=None,
        shuffle_buffer=DEFAULT_SHUFFLE_BUFFER,
    ):
        others = [test_file] + ([unlabel_file] if unlabel_file else [])
        for path in [label_file] + others:
            check_record_file(path)
        self.name = name
        self.cache_mb = DEFAULT_CACHE_MB if cache_mb is None else cache_mb
        self.shuffle_buffer = shuffle_buffer
        self.label_file, self.unlabel_file, self.test_file = label_file, unlabel_file, test_file
        self.valid, self.valid_from_label_file = valid, valid_from_label_file
        # Unlabel-file records never trained on: the validation images, or an augmented copy's
        # whole un-augmented head (its map's clean_head), whichever is longer.
        self.unlabel_skip = 0 if valid_from_label_file else max(valid, clean_head)
        self.augment = augment_lib.get(augment)
        self.shape = checks.common_shape(label_file, others)
        self._labelled, self._held = self._label_file_parts(scan_records(label_file))
        self.train_labels = self._labelled.labels
        checks.check_some_labelled(self.train_labels, label_file)
        test_scan = scan_records(test_file)
        self._test = Part(test_scan, np.flatnonzero(test_scan.labels >= 0))
        self.test_labels = self._test.labels
        self.class_mapping = class_mapping
        self.nclass = checks.data_nclass(nclass, class_mapping, self.train_labels, self.test_labels, label_file)
        checks.check_img_size(img_size, self.shape, label_file)
        self.class_names = load_class_names(class_mapping, self.nclass)
        self._unlabelled, self._head = self._unlabel_file_parts()
        self.unlabel_count = 0 if self._unlabelled is None else len(self._unlabelled)
        # Which training files are decoded into memory: the labelled one first, within cache_mb.
        self.cached = cache_plan(len(self.train_labels), self.unlabel_count, self.shape, self.cache_mb)
        self._streams = {}

    def _label_file_parts(self, scan):
        """(training `Part`, held-out validation `Part`) of the label file's labelled records."""
        labelled = np.flatnonzero(scan.labels >= 0)
        held = np.zeros([0], np.int64)
        if self.valid_from_label_file:
            checks.check_holdout(self.valid, labelled.size, self.label_file)
            held = balanced_holdout(scan.labels, self.valid)
            labelled = np.setdiff1d(labelled, held)
        return Part(scan, labelled), Part(scan, held)

    def _unlabel_file_parts(self):
        """(training `Part`, validation-head `Part`) of the unlabel file; (None, None) without one."""
        if not self.unlabel_file:
            return None, None
        scan = scan_records(self.unlabel_file)
        checks.check_unlabelled_left(len(scan) - self.unlabel_skip, self.unlabel_skip, self.unlabel_file)
        return Part(scan, np.arange(self.unlabel_skip, len(scan))), Part(scan, np.arange(min(self.valid, len(scan))))

    @classmethod
    def from_name(cls, text, augment='none', nclass=None, img_size=None, class_mapping=None, root=None, **kwargs):
        """The SSL dataset `<name>.<seed>@<size>-<valid>` under $ML_DATA."""
        parsed = parse_dataset_name(text)
        label_file, unlabel_file, map_file = split_paths(parsed.split, root)
        check_record_file(label_file)
        split_map = read_json(map_file, 'split map')
        checks.check_valid_capacity(text, parsed, split_map, unlabel_file, root)
        mapping = class_mapping or class_mapping_path(parsed.name, root)
        return cls(
            text,
            label_file,
            test_path(parsed.name, root),
            unlabel_file,
            parsed.valid,
            class_mapping=mapping,
            nclass=nclass,
            img_size=img_size,
            augment=augment,
            clean_head=int(split_map.get('clean_head', 0)),
            **kwargs,
        )

    @classmethod
    def from_records(cls, name, train_file, test_file, valid, **kwargs):
        """Every labelled record of `train_file`, `valid` of them (class-balanced) held out for validation."""
        return cls(name, train_file, test_file, valid=valid, valid_from_label_file=True, **kwargs)

    def pipeline_errors(self):
        """Context manager turning a defective record met by a pipeline into a one-line UserError.

        Wrap the code that iterates the pipelines (`next(stream)`, the step that takes the
        batch, evaluation loops): a record whose image is missing, undecodable or of another
        size raises a TensorFlow InvalidArgumentError only when the stream reaches it.
        Other errors pass through unchanged.
        """
        return records.pipeline_errors([p for p in (self.label_file, self.unlabel_file, self.test_file) if p])

    def _endless(self, unlabelled, seed, start):
        """Infinite (element index, position, uint8 image [H, W, C], label) of a training file, from element `start`."""
        if unlabelled not in self._streams:
            if unlabelled and self._unlabelled is None:
                raise UserError(f'{self.name} has no unlabelled file: an unlabelled stream needs an SSL split')
            self._streams[unlabelled] = EndlessStream(self._unlabelled if unlabelled else self._labelled, self.shape)
        if self.cached[unlabelled]:
            return self._streams[unlabelled].cached(seed, start)
        return self._streams[unlabelled].streamed(self.shuffle_buffer, seed, start)

    # -- pipelines

    def train_labelled(self, batch, seed, start=0):
        """Infinite batches (images [B, H, W, C] in [-1, 1], labels [B]) of augmented labelled data."""
        ds = self._endless(False, seed, start)
        ds = ds.map(lambda i, j, x, y: (augmented(self.augment, i, x, seed, 0), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def train_unlabelled(self, batch, views, seed, start=0):
        """Infinite batches (images [B, len(views), H, W, C] in [-1, 1], labels [B], indices [B]) of unlabelled data.

        views: the kind of each view ('weak', 'strong': `augment.view_function`), e.g. ('weak',
        'weak'). View v of element i is augmented with the seed (seed, v, i). labels: the
        records' labels (-1 = unknown), for monitors only. indices: int64, each image's index among
        the unlabel file's training records, 0 <= index < `unlabel_count` (its record number minus
        the `unlabel_skip` records of the file's head): what per-image state is kept by.
        """
        if isinstance(views, (str, int)) or not views:
            raise ValueError(f'views must be a non-empty tuple of view kinds, e.g. ("weak", "weak"), not {views!r}')
        functions = [augment_lib.view_function(kind, self.augment) for kind in views]
        seed = seed + 7919
        ds = self._endless(True, seed, start)

        def augment(i, j, x, y):
            return tf.stack([augmented(f, i, x, seed, v) for v, f in enumerate(functions)]), y, j

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def eval_labelled(self, batch):
        """Finite batches (images, labels) of the labelled training images, un-augmented, in file order."""
        return eval_batches(self._labelled, self.shape, batch)

    def eval_valid(self, batch):
        """Finite batches of the `valid` validation images, in file order (None when valid = 0)."""
        if not self.valid:
            return None
        return eval_batches(self._held if self.valid_from_label_file else self._head, self.shape, batch)

    def eval_test(self, batch):
        """Finite batches of the labelled test images."""
        return eval_batches(self._test, self.shape, batch)
