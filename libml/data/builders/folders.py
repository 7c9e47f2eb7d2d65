"""Custom datasets from image folders, with class balancing and random erasing.

Images sit in class folders (train/dog/x.jpg) or are named <index>_<class>.<ext>. Class ids
follow the sorted train class names. Labelled train images come first in the train split,
then the unlabelled ones with label -1.
"""

import collections
import os

from libml import progress
from libml.data import image_files
from libml.data.builders.common import Built, chain
from libml.errors import UserError, warn

import numpy as np

SPLITS = ('train', 'test')
RANDOM_ERASING_PARTS = ('train', 'unlabel', 'all')

Entry = collections.namedtuple('Entry', 'path cls height width gray')


def scan_folder(directory, flag, need_class, skip_bad, bad):
    """Every readable image under `directory` as an Entry, checked from its header.

    flag: the command-line flag that named `directory`, for error messages.
    need_class: every image must have a class (folder or <index>_<class> name).
    skip_bad: skip unreadable files, appending them to the list `bad`, instead of a UserError.
    """
    if not os.path.isdir(directory):
        raise UserError(f'--{flag}={directory}: folder not found')
    paths = image_files.list_images(directory)
    if not paths:
        raise UserError(f'--{flag}={directory} holds no images ({", ".join(image_files.IMAGE_EXTENSIONS)})')
    entries = []
    for path in progress.bar(paths, desc=f'checking {flag}', unit='img', leave=False):
        cls = image_files.class_of(path, directory)
        if need_class and cls is None:
            raise UserError(
                f'cannot tell the class of {path}: put it in a class folder '
                f'({directory}/<class>/) or name it <index>_<class>.<ext> '
                '(scripts/rename_files.py does that)'
            )
        try:
            entries.append(Entry(path, cls, *image_files.probe_image(path)))
        except image_files.BadImage as e:
            _skip(e, skip_bad, bad)
    return entries


def _skip(error, skip_bad, bad):
    """Appends the unreadable image of `error` (an image_files.BadImage) to `bad` when `skip_bad`; else raises it."""
    if not skip_bad:
        raise image_files.BadImage(error.path, error.reason, 'fix or remove it, or pass --skip_bad_images') from None
    bad.append(error.path)


def balance(entries, target, rng):
    """Exactly `target` picks per class: (entry, is_extra_copy) pairs, grouped by sorted class.

    A larger class keeps a random subset (in file order); a smaller one keeps every image and
    adds randomly chosen repeats, flagged to be augmented. rng: a numpy Generator.
    """
    by_class = collections.defaultdict(list)
    for entry in entries:
        by_class[entry.cls].append(entry)
    plan = []
    for cls in sorted(by_class):
        members = by_class[cls]
        if len(members) >= target:
            keep = np.sort(rng.choice(len(members), target, replace=False))
            plan += [(members[i], False) for i in keep]
        else:
            plan += [(m, False) for m in members]
            plan += [(members[i], True) for i in rng.choice(len(members), target - len(members))]
    return plan


def make_plan(entries, target, rng, label_of):
    """(path, label, is_extra_copy) triples, balanced to `target` per class when target > 0."""
    picked = balance(entries, target, rng) if target else [(e, False) for e in entries]
    return [(e.path, label_of(e), extra) for e, extra in picked]


def load_images(plan, size, channels, seed, stream, erasing_prob, skip_bad, bad):
    """Loads planned images -> (uint8 [H, W, C], label) pairs, augmenting the extra copies.

    plan: (path, label, is_extra_copy) triples. size: resize to size x size (None: keep).
    erasing_prob: probability of noise-filled random erasing of each image (0: never).
    Randomness depends only on `seed`, `stream` and the position in the plan.
    """
    for index, (path, label, extra) in enumerate(plan):
        try:
            image = image_files.load_image(path, size, channels)
        except image_files.BadImage as e:
            _skip(e, skip_bad, bad)
            continue
        rng = np.random.default_rng([seed, stream, index])
        if extra:
            image = image_files.random_affine(image, rng)
        if erasing_prob and rng.random() < erasing_prob:
            image = image_files.random_erase(image, rng)
        yield image, label


def custom(
    traindir,
    testdir,
    unlabeldir=None,
    img_size=None,
    train_balance=0,
    unlabel_balance=0,
    random_erasing=None,
    random_erasing_prob=0.5,
    skip_bad_images=False,
    seed=0,
):
    """Image folders -> (Built, bad): `bad` lists the skipped unreadable images as they are met.

    img_size: resize every image to img_size square (needed when sizes differ).
    train_balance, unlabel_balance: images per class after over/under-sampling (0: off).
    random_erasing: None or one of RANDOM_ERASING_PARTS, the part whose images are erased
        (noise-filled rectangle, once, here) with probability random_erasing_prob; never test.
    """
    if os.path.isdir(traindir) and os.path.isdir(testdir) and os.path.samefile(traindir, testdir):
        raise UserError(f'--traindir and --testdir are the same folder ({testdir}): test on images not trained on')
    bad = []
    train = scan_folder(traindir, 'traindir', True, skip_bad_images, bad)
    test = scan_folder(testdir, 'testdir', True, skip_bad_images, bad)
    unlabel = scan_folder(unlabeldir, 'unlabeldir', unlabel_balance > 0, skip_bad_images, bad) if unlabeldir else []
    names = sorted({e.cls for e in train})
    if len(names) == 1:
        warn(f'--traindir={traindir} holds one class ({names[0]}): a classifier needs two or more, one sub-folder each')
    ids = {name: i for i, name in enumerate(names)}
    unknown = sorted({e.cls for e in test} - set(ids))
    if unknown:
        example = next(e.path for e in test if e.cls == unknown[0])
        raise UserError(
            f'--testdir has classes missing from --traindir: {", ".join(unknown)} '
            f'(e.g. {example}); train classes: {", ".join(names)}'
        )
    everything = train + unlabel + test
    sizes = {}  # (height, width) -> first image of that size
    for e in everything:
        sizes.setdefault((e.height, e.width), e.path)
    if img_size is None and len(sizes) > 1:
        (h1, w1), (h2, w2) = list(sizes)[:2]
        raise UserError(
            f'images differ in size ({sizes[h1, w1]} is {w1}x{h1}, {sizes[h2, w2]} is '
            f'{w2}x{h2}): pass --img_size=S to resize them all to SxS'
        )
    channels = 1 if all(e.gray for e in everything) else 3
    plans = [
        make_plan(train, train_balance, np.random.default_rng([seed, 0]), lambda e: ids[e.cls]),
        make_plan(unlabel, unlabel_balance, np.random.default_rng([seed, 1]), lambda e: -1),
        make_plan(test, 0, None, lambda e: ids[e.cls]),
    ]
    erased = [random_erasing in ('train', 'all'), random_erasing in ('unlabel', 'all'), False]

    def load(stream):
        prob = random_erasing_prob if erased[stream] else 0
        items = load_images(plans[stream], img_size, channels, seed, stream, prob, skip_bad_images, bad)
        return items, len(plans[stream])

    return Built({'train': chain(load(0), load(1)), 'test': load(2)}, names, {}), bad
