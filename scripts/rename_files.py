#!/usr/bin/env python3
"""Renames images in place to <index>_<class>.<ext>, the flat form create_datasets.py reads.

Usage: scripts/rename_files.py --targetdir=D [--index=0] [--filetype=png|jpg] [--dry_run]

Every file of the chosen type under D (recursively, in sorted path order) is renamed inside
its own folder; <class> is the name of that folder and <index> counts up from --index across
all of D. Nothing is renamed if any new name is already taken by another file. Keep a backup
of your images: the original names are lost.
"""

import os

from libml.errors import UserError, cli_main

from absl import app, flags

flags.DEFINE_string('targetdir', None, 'Folder whose class folders hold the images to rename.')
flags.DEFINE_integer('index', 0, 'Number given to the first file; the others count up from it.', lower_bound=0)
flags.DEFINE_enum(
    'filetype',
    'png',
    ['png', 'jpg'],
    'Which images to rename (jpg includes .jpeg); the extension is matched in any case and kept as it is.',
)
flags.DEFINE_bool('dry_run', False, 'Only list the renames ("old -> new"); change nothing.')

FLAGS = flags.FLAGS

EXTENSIONS = {'png': ('.png',), 'jpg': ('.jpg', '.jpeg')}


def files_of_type(directory, extensions):
    """Sorted paths of the files under `directory` whose extension (any case) is in `extensions`."""
    found = []
    for parent, folders, files in os.walk(directory):
        folders[:] = [f for f in folders if not f.startswith('.')]
        found.extend(
            os.path.join(parent, f)
            for f in files
            if not f.startswith('.') and os.path.splitext(f)[1].lower() in extensions
        )
    return sorted(found)


def plan_renames(paths, root, start):
    """[(old path, new path)] giving each file `<start + i>_<parent folder name><ext>`.

    UserError if a file sits directly in `root` (it has no class folder) or a new name is
    already taken by a file other than the one being renamed.
    """
    root = os.path.abspath(root)
    plan = []
    for offset, path in enumerate(paths):
        parent = os.path.dirname(os.path.abspath(path))
        if parent == root:
            raise UserError(f'{path} is not inside a class folder: move it to {root}/<class>/')
        new = os.path.join(
            os.path.dirname(path), f'{start + offset}_{os.path.basename(parent)}{os.path.splitext(path)[1]}'
        )
        if new != path and os.path.lexists(new):
            raise UserError(
                f'cannot rename {path} to {new}: that name is taken; nothing was renamed '
                f'(choose an --index above the existing numbers)'
            )
        plan.append((path, new))
    return plan


def main(argv):
    if len(argv) > 1:
        raise UserError(f'unexpected argument {argv[1]!r}: pass the folder as --targetdir=D')
    if not FLAGS.targetdir:
        raise UserError('--targetdir=D is required')
    if not os.path.isdir(FLAGS.targetdir):
        raise UserError(f'--targetdir={FLAGS.targetdir}: folder not found')
    paths = files_of_type(FLAGS.targetdir, EXTENSIONS[FLAGS.filetype])
    if not paths:
        raise UserError(f'no {FLAGS.filetype} files under {FLAGS.targetdir}')
    plan = plan_renames(paths, FLAGS.targetdir, FLAGS.index)
    for old, new in plan:
        if FLAGS.dry_run:
            print(f'{old} -> {new}')
        elif new != old:
            os.rename(old, new)
    verb = 'would rename' if FLAGS.dry_run else 'renamed'
    print(
        f'{verb} {sum(old != new for old, new in plan)} file(s) under {FLAGS.targetdir} '
        f'(indices {FLAGS.index}..{FLAGS.index + len(plan) - 1})'
    )


if __name__ == '__main__':
    app.run(cli_main(main))
