#!/usr/bin/env python3
"""Exports a run's EMA model as a SavedModel that classifies encoded images (TensorFlow only to serve).

Usage: ./scripts/export.py RUN_DIR|CHECKPOINT [--out=DIR] [--overwrite] [--img_size=N] [--class_mapping=JSON]

RUN_DIR (experiments/<dataset>/<run>/) exports its newest checkpoint; a checkpoint
(<run>/tf/model.ckpt-NNNNNNNNNN) exports that one. The architecture comes from the run's
args/args.json (or, without it, from the checkpoint's variables); the input size from
args.json's img_size or the dataset's first test image; the class names from
$ML_DATA/<name>_class_mappings.json (ids 0..K-1 without it). Writes RUN_DIR/export/ (or --out)
atomically; an existing export is replaced only with --overwrite.

Signatures (see libml/serve/export.py): serving_default takes `images`, a tf.string [N] of PNG, JPEG,
BMP, GIF or WebP bytes of any size, and returns `probabilities` [N, K], `class_ids` [N],
`classes` [N] (names) and `class_names` [K]; serving_decoded takes float32 [N, H, W, C] in [0, 1].

    import tensorflow as tf
    model = tf.saved_model.load('experiments/.../export')
    out = model.signatures['serving_default'](images=tf.constant([open('cat.png', 'rb').read()]))
    print(out['classes'][0].numpy().decode(), float(tf.reduce_max(out['probabilities'][0])))
"""

from libml.errors import UserError, cli_main
from libml.serve import export

from absl import app, flags, logging

flags.DEFINE_string('out', '', 'Output folder; default RUN_DIR/export.')
flags.DEFINE_boolean('overwrite', False, 'Replace an existing export.')
flags.DEFINE_integer('img_size', 0, "The model's input side, when neither args.json nor the dataset tells it.")
flags.DEFINE_string('class_mapping', '', 'Class-name JSON ({"0": "cat", ...}); default from the run\'s dataset.')
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) != 2:
        raise UserError('usage: scripts/export.py RUN_DIR|CHECKPOINT [--out=DIR] [--overwrite]')
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines about saving
    info = export.export(
        argv[1], out=FLAGS.out, overwrite=FLAGS.overwrite, img_size=FLAGS.img_size, class_mapping=FLAGS.class_mapping
    )
    height, width, channels = info['image_shape']
    kimg = '' if info['images_seen'] is None else f', {info["images_seen"] >> 10} kimg'
    names = info['class_names']
    shown = ', '.join(names[:10]) + (', ...' if len(names) > 10 else '')
    print(f'Exported the EMA model of {info["checkpoint"]}{kimg} ({info["arch"]}) to {info["out"]}')
    print(f'  input {height}x{width}x{channels}, {len(names)} classes: {shown}')
    print(f'  signatures: {", ".join(info["signatures"])}')


if __name__ == '__main__':
    app.run(cli_main(main))
