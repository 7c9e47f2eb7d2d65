"""The `DataSet`: one experiment's record files and their tf.data pipelines (augmented, batched)."""

import hashlib
import os

from libml.data import augment as augment_lib
from libml.data import checks, records
from libml.data.names import load_class_names, mapping_file, parse_dataset_name, split_paths, test_path, unseen_path
from libml.data.records import check_record_file, read_labels, record_decoder, scan_records
from libml.data.streams import DEFAULT_CACHE_MB, DEFAULT_SHUFFLE_BUFFER, EndlessStream, Part, cache_plan
from libml.errors import UserError
from libml.files import read_json

import numpy as np
import tensorflow as tf

# Seed of the training-unlabelled images the outlier AUROC is computed on: the same images for every run of a split.
OUTLIER_SAMPLE_SEED = 0


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


def outlier_status(labels, source_labels, classes):
    """Per record: 1 = its class is outside the labelled `classes`, 0 = one of them, -1 = unknown.

    labels: int [N] as recorded (-1 = no label); source_labels: int [N], the labels the records
    had before `filter_dataset.py --label_order` turned every class outside the order into -1, or
    None when unknown. A record labelled -1 whose source label is a class (>= 0) is outside.
    """
    labels = np.asarray(labels)
    status = np.where(labels >= 0, np.where(np.isin(labels, classes), 0, 1), -1)
    if source_labels is not None:
        status = np.where((labels < 0) & (np.asarray(source_labels) >= 0), 1, status)
    return status.astype(np.int8)


def source_labels(split_map, unlabel_file):
    """Labels the unlabel file's records had in the file `filter_dataset.py` filtered it from, or None.

    Read from the split map's `unlabel_source` (looked for beside `unlabel_file` when its recorded
    path is gone) and `unlabel_kept` (the records kept, in output order). None for a split that was
    not filtered, or whose source file is not found.
    """
    source, kept = split_map.get('unlabel_source'), split_map.get('unlabel_kept')
    if not source or kept is None:
        return None
    for path in (source, os.path.join(os.path.dirname(unlabel_file), os.path.basename(source))):
        if os.path.isfile(path):
            labels = read_labels(path)
            return labels[np.asarray(kept, np.int64)] if len(kept) and max(kept) < len(labels) else None
    return None


class DataSet:
    """The files of one experiment and their tf.data pipelines.

    Attributes: `name` (str), `shape` (H, W, C), `nclass`, `class_names`, `train_labels`
    (labels of the labelled training images), `labelled_classes` (the classes among them),
    `test_labels`, `unlabel_count` and the record files.

    Outliers: `unseen_file` holds test images of classes outside the labelled ones (every record
    counts as an outlier, whatever its label); `unlabel_source_labels` are the labels the unlabel
    file's records had before `filter_dataset.py --label_order` turned the other classes into -1
    (`source_labels`), so those records are known outliers too (`outlier_status`).

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
        map_file=None,
        cache_mb=None,
        shuffle_buffer=DEFAULT_SHUFFLE_BUFFER,
        unseen_file=None,
        unlabel_source_labels=None,
    ):
        others = [test_file] + [f for f in (unlabel_file, unseen_file) if f]
        for path in [label_file] + others:
            check_record_file(path)
        checks.check_not_test_file([label_file] + others[1:], test_file)
        self.name = name
        self.cache_mb = DEFAULT_CACHE_MB if cache_mb is None else cache_mb
        self.shuffle_buffer = shuffle_buffer
        self.label_file, self.unlabel_file, self.test_file = label_file, unlabel_file, test_file
        self.unseen_file, self._unseen, self._unlabelled_status = unseen_file, None, None
        self.map_file = map_file
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
        self._unlabelled, self._head = self._unlabel_file_parts()
        self.unlabel_count = 0 if self._unlabelled is None else len(self._unlabelled)
        self.class_mapping = class_mapping
        labelled = self._labelled_data()
        self.nclass = checks.data_nclass(nclass, labelled)
        checks.check_img_size(img_size, self.shape, label_file)
        self.class_names = load_class_names(class_mapping, self.nclass, checks.largest_label(labelled)[1])
        self.labelled_classes = np.unique(self.train_labels)
        if unseen_file is not None:
            unseen = scan_records(unseen_file)
            self._unseen = Part(unseen, np.arange(len(unseen)))
        if self._unlabelled is not None:
            source = None if unlabel_source_labels is None else unlabel_source_labels[self._unlabelled.records]
            self._unlabelled_status = outlier_status(self._unlabelled.labels, source, self.labelled_classes)
        # Which training files are decoded into memory: the labelled one first, within cache_mb.
        self.cached = cache_plan(len(self.train_labels), self.unlabel_count, self.shape, self.cache_mb)
        self._streams = {}

    def _labelled_data(self):
        """{file: labels} of the labelled records trained, validated or tested on (they set the class count)."""
        valid = self._held if self.valid_from_label_file else self._head
        labelled = {self.test_file: self.test_labels, self.label_file: self.train_labels}
        if valid is not None and len(valid):
            labelled[valid.path] = np.concatenate([labelled.get(valid.path, []), valid.labels]).astype(np.int64)
        return labelled

    def parts(self):
        """{'labelled', 'validation', 'unlabelled', 'test': the `Part` of each (None when absent)}."""
        valid = self._held if self.valid_from_label_file else self._head
        return {
            'labelled': self._labelled,
            'validation': valid if valid is not None and len(valid) and self.valid else None,
            'unlabelled': self._unlabelled,
            'test': self._test,
        }

    def fingerprint(self):
        """What the run's data is: each file's size and record count, and a hash of the split map.

        A split or dataset rebuilt from other images changes it (`run_folder.check_same_data`).
        """
        files = {'label': self._labelled.scan, 'test': self._test.scan}
        if self._unlabelled is not None:
            files['unlabel'] = self._unlabelled.scan
        out = {role: {'records': len(scan), 'bytes': scan.size} for role, scan in files.items()}
        if self.map_file:
            with open(self.map_file, 'rb') as f:
                out['split_map_sha256'] = hashlib.sha256(f.read()).hexdigest()
        return out

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
        mapping = mapping_file(class_mapping, parsed.name, root)
        unseen = unseen_path(parsed.name, root)
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
            unseen_file=unseen if os.path.exists(unseen) else None,
            unlabel_source_labels=source_labels(split_map, unlabel_file),
            map_file=map_file,
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
        files = (self.label_file, self.unlabel_file, self.test_file, self.unseen_file)
        return records.pipeline_errors([p for p in files if p])

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

    def eval_unlabelled(self, batch):
        """Finite batches (images, labels) of the training-unlabelled images, un-augmented, in index order."""
        if self._unlabelled is None:
            raise UserError(f'{self.name} has no unlabelled file: this algorithm needs an SSL split')
        return eval_batches(self._unlabelled, self.shape, batch)

    def eval_unseen(self, batch):
        """Finite batches of the unseen-class test images (`unseen_file`), None without one."""
        return None if self._unseen is None else eval_batches(self._unseen, self.shape, batch)

    def eval_unlabelled_outliers(self, batch, limit):
        """(finite batches (images, labels), is_outlier bool [n]) of training-unlabelled images of known class.

        At most `limit` of the training-unlabelled records whose class is known (`outlier_status`),
        drawn with OUTLIER_SAMPLE_SEED, in file order: the same images at every report and in every
        run of the split. None when no record is known or `limit` is 0.
        """
        if self._unlabelled_status is None or not limit:
            return None
        known = np.flatnonzero(self._unlabelled_status >= 0)
        if not known.size:
            return None
        if known.size > limit:
            known = np.sort(np.random.RandomState(OUTLIER_SAMPLE_SEED).choice(known, limit, replace=False))
        part = Part(self._unlabelled.scan, self._unlabelled.records[known])
        return eval_batches(part, self.shape, batch), self._unlabelled_status[known] == 1
