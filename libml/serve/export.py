"""A servable SavedModel of a run's EMA weights: encoded images in, class probabilities out.

`export(path)` restores the newest (or the given) checkpoint of a run, copies the raw model's
batch-norm moving statistics into the EMA model (they are what it evaluates with) and saves
a SavedModel whose graph decodes, converts and resizes the images itself, so loading it needs
TensorFlow only:

    serving_default   images: tf.string [N] (PNG, JPEG, BMP, GIF or WebP bytes, any size)
    serving_decoded   images: float32 [N, H, W, C] in [0, 1], already at the model's size
    both return       probabilities float32 [N, K], class_ids int32 [N], classes tf.string [N]
                      (the predicted class names) and class_names tf.string [K]; N = 0 gives
                      empty outputs of these types without running the model
    and, for a model with open-set heads (OpenMatch, IOMatch), outlier_score float32 [N]: higher =
                      more likely outside the labelled classes (`outlier_rule`)

The loaded object also carries `class_names` (string [K]) and `image_shape` (int32 [3]).

The preprocessing inside the graph is `libml.serve.preprocess` (Pillow's, bit for bit).
"""

import json
import os
import re

from libml import models, openset
from libml.data.names import class_mapping_path, data_dir, load_class_names, mapping_file, parse_dataset_name, test_path
from libml.data.records import first_image_shape
from libml.errors import UserError, first_line
from libml.files import check_writable, temporary_file
from libml.serve.preprocess import preprocess
from libml.train import checkpoints, run_folder

import tensorflow as tf

SERVING = 'serving_default'
DECODED = 'serving_decoded'
ARCH_KEYS = ('arch', 'filters', 'repeat', 'scales')
_KERNEL = 'kernel/.ATTRIBUTES/VARIABLE_VALUE'
_HEAD_BIAS = 'model/head/bias/.ATTRIBUTES/VARIABLE_VALUE'
_IMAGES_SEEN = 'images_seen/.ATTRIBUTES/VARIABLE_VALUE'


# --------------------------------------------------------------------------- run -> EMA model


def find_run(path):
    """(checkpoint prefix, run dir) for a run dir, its tf/ folder or a checkpoint path."""
    stripped = re.sub(r'\.(index|data-\d+-of-\d+)$', '', path.rstrip('/'))
    if not os.path.exists(stripped) and not os.path.exists(stripped + '.index'):
        raise UserError(
            f'{path} not found: pass a run folder (experiments/<dataset>/<run>/) or one of its '
            'checkpoints (tf/model.ckpt-NNNNNNNNNN)'
        )
    prefix = checkpoints.normalise(stripped)
    return prefix, run_folder.holding(os.path.abspath(prefix))


def read_checkpoint(prefix):
    """(reader, {variable key: shape}); UserError when it is unreadable or not a checkpoint of this project."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f'checkpoint {prefix} is unreadable ({first_line(e)}): is it complete?') from None
    if _HEAD_BIAS not in shapes or not any(k.startswith('ema_model/') for k in shapes):
        raise UserError(f'{prefix} is not a checkpoint of this project (no model/head and ema_model variables)')
    return reader, shapes


def architecture_from_checkpoint(shapes):
    """{'arch', 'filters', 'repeat', 'scales'} read from a checkpoint's variable shapes (model/...)."""

    def shape(key):
        return shapes.get(f'model/{key}/.ATTRIBUTES/VARIABLE_VALUE')

    def widths(pattern):
        found, i = [], 0
        while shape(pattern.format(i)) is not None:
            found.append(shape(pattern.format(i))[-1])
            i += 1
        return found

    if shape('stem/conv/kernel') is not None:  # convnet: a stem block, two blocks per scale
        scales = len(widths('blocks/{}/conv/kernel')) // 2
        return {'arch': 'convnet', 'filters': shape('stem/conv/kernel')[-1], 'repeat': 1, 'scales': scales}
    for arch, pattern in (('shake', 'units/{}/branch1/conv1/kernel'), ('resnet', 'units/{}/conv1/kernel')):
        units = widths(pattern)
        if units:
            scales = len(set(units))
            return {'arch': arch, 'filters': units[0], 'repeat': len(units) // scales, 'scales': scales}
    raise UserError("cannot tell the architecture from the checkpoint: put the run's args/args.json back")


def heads_from_checkpoint(shapes):
    """The `models.Heads` a checkpoint's model has, read from its variables (model/open_set/...)."""

    def shape(key):
        return shapes.get(f'model/open_set/{key}/.ATTRIBUTES/VARIABLE_VALUE')

    projection = shape('projection/1/kernel')
    return models.Heads(
        ova=shape('ova/kernel') is not None,
        open=shape('open/kernel') is not None,
        projection=projection[-1] if projection else 0,
    )


def outlier_rule(heads):
    """The `openset.OUTLIER_SCORES` name of a model's served outlier score, None without open-set heads.

    The open head's outlier class where the model has one (IOMatch), else the one-vs-all score of the
    predicted class (OpenMatch): the scores those algorithms report (`Algorithm.outlier_score`).
    """
    return 'open' if heads.open else 'ova' if heads.ova else None


def input_shape(args, channels, img_size=0, root=None):
    """(H, W, C) of the model: `img_size`, else args.json's img_size, else the dataset's first test image."""
    size = img_size or int((args or {}).get('img_size') or 0)
    if size:
        return size, size, channels
    candidates = []
    if args and args.get('test_record'):
        record = args['test_record']
        candidates.append(record if os.path.dirname(record) else os.path.join(root or data_dir(), record))
    if args and args.get('dataset'):
        candidates.append(test_path(_dataset_stem(args['dataset']), root))
    for path in candidates:
        if os.path.isfile(path):
            height, width, _ = first_image_shape(path)
            return height, width, channels
    where = f' (looked for {", ".join(candidates)})' if candidates else ''
    raise UserError(f"cannot tell the model's input size{where}: pass --img_size")


def _dataset_stem(name):
    return parse_dataset_name(name, allow_plain=True, need_valid=False).name


def class_names(args, nclass, class_mapping='', root=None, recorded=None, model='the model'):
    """(names [nclass], notice or None) of `model`, a classifier of `nclass` classes.

    From `class_mapping` (--class_mapping), else the names the run recorded when it started
    (`recorded`, from its data.json), else args.json's class mapping or
    $ML_DATA/<name>_class_mappings.json. A mapping of another class count is a UserError naming
    it and `model`. Without any, the names are the ids '0'..'K-1' and the notice says so.
    """
    if class_mapping:
        return load_class_names(mapping_file(class_mapping, '', root), nclass, model), None
    if recorded and len(recorded) == nclass:
        return list(recorded), None
    path = (args or {}).get('class_mapping') or ''
    if not path and args and args.get('dataset'):
        path = class_mapping_path(_dataset_stem(args['dataset']), root)
    if path and os.path.exists(path):
        return load_class_names(path, nclass, model), None
    where = f' ({path} not found)' if path else ''
    return [str(i) for i in range(nclass)], f'notice: no class mapping{where}: class names are the ids 0..{nclass - 1}'


def restore_ema_model(prefix, config, shape, nclass, heads=models.Heads()):
    """The EMA model (with `heads`) of checkpoint `prefix`, evaluating with the raw model's batch-norm statistics."""
    build = lambda: models.create_model(
        config['arch'],
        nclass,
        shape,
        filters=int(config['filters']),
        repeat=int(config['repeat']),
        scales=int(config['scales']),
        heads=heads,
    )
    model, ema_model = build(), build()
    try:
        status = tf.train.Checkpoint(model=model, ema_model=ema_model).read(prefix)
        status.assert_existing_objects_matched().expect_partial()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        first = first_line(e)[:200]
        raise UserError(
            f'checkpoint {prefix} does not fit {config["arch"]} filters={config["filters"]} '
            f'repeat={config["repeat"]} scales={config["scales"]} for {shape} images: {first}'
        ) from None
    models.copy_moving_statistics(model, ema_model)
    return ema_model


# --------------------------------------------------------------------------- SavedModel


def model_outputs(model, images, nclass, rule=None):
    """{'probabilities': softmax(logits) [N, K], 'outlier_score': [N] when `rule`} in inference mode.

    images: float32 [N, H, W, C] in [-1, 1]; rule: an `openset.OUTLIER_SCORES` name or None. An empty
    batch (N = 0) gives empty float32 outputs without running the model: oneDNN's Conv2D
    (TF_ENABLE_ONEDNN_OPTS=1) returns a zero-size batch with its input's channels, and the next
    batch norm fails.
    """

    def run():
        outputs = model.outputs(images, training=False)
        out = {'probabilities': tf.nn.softmax(outputs['logits'])}
        if rule:
            out['outlier_score'] = openset.outlier_score(rule, outputs)
        return out

    def empty():
        out = {'probabilities': tf.zeros([0, nclass], tf.float32)}
        if rule:
            out['outlier_score'] = tf.zeros([0], tf.float32)
        return out

    return tf.cond(tf.shape(images)[0] > 0, run, empty)


def serving_module(ema_model, shape, names, rule=None):
    """(tf.Module holding the model, {signature name: concrete function}) ready to save.

    rule: the `openset.OUTLIER_SCORES` name of the outlier score the signatures add, or None.
    """
    module = tf.Module()
    module.model = ema_model
    module.class_names = tf.Variable(names, dtype=tf.string, trainable=False, name='class_names')
    module.image_shape = tf.Variable(list(shape), dtype=tf.int32, trainable=False, name='image_shape')

    def outputs(images):
        out = model_outputs(module.model, images * 2.0 - 1.0, len(names), rule)
        ids = tf.argmax(out['probabilities'], axis=1, output_type=tf.int32)
        return dict(
            out,
            class_ids=ids,
            classes=tf.gather(module.class_names, ids),
            class_names=tf.identity(module.class_names),
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='images')])
    def serve_encoded(images):
        spec = tf.TensorSpec(shape, tf.float32)
        return outputs(tf.map_fn(lambda e: preprocess(e, shape), images, fn_output_signature=spec))

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32, name='images')])
    def serve_decoded(images):
        return outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32, name='images')])
    def model_range_outputs(images):  # images already in [-1, 1], as libml's own pipelines feed them
        return model_outputs(module.model, images, len(names), rule)

    module.serve_encoded, module.serve_decoded = serve_encoded, serve_decoded
    module.model_range_outputs = model_range_outputs
    return module, {SERVING: serve_encoded.get_concrete_function(), DECODED: serve_decoded.get_concrete_function()}


def export(path, out='', overwrite=False, img_size=0, class_mapping='', root=None, log=print):
    """Writes the SavedModel of run or checkpoint `path` to `out` (default <run dir>/export); returns its info.

    Written to a temporary folder beside `out`, then renamed; an existing `out` is replaced only
    with `overwrite`. `log` receives the one-line notices.
    """
    prefix, run_dir = find_run(path)
    out = os.path.abspath(out or os.path.join(run_dir, 'export'))
    check_writable(out, overwrite)
    if os.path.exists(out) and not is_saved_model(out):
        raise UserError(f'{out} exists and is not an export (no saved_model.pb): choose another --out')
    reader, shapes = read_checkpoint(prefix)
    args = run_folder.read_args(run_dir)
    if args and all(args.get(k) is not None for k in ARCH_KEYS):
        config = {k: args[k] for k in ARCH_KEYS}
    else:
        config = architecture_from_checkpoint(shapes)
        log(
            f'notice: no args/args.json in {run_dir}: architecture read from the checkpoint '
            f'({", ".join(f"{k}={v}" for k, v in config.items())})'
        )
    nclass = shapes[_HEAD_BIAS][-1]
    stems = [s for k, s in shapes.items() if k.startswith('model/stem/') and k.endswith(_KERNEL)]
    if not stems:
        raise UserError(f'{prefix}: no model/stem kernel, cannot tell the image channels')
    shape = input_shape(args, stems[0][2], img_size, root)
    recorded = run_folder.read_data(run_dir).get('class_names')
    names, notice = class_names(args, nclass, class_mapping, root, recorded, f'the model of {prefix}')
    if notice:
        log(notice)
    heads = heads_from_checkpoint(shapes)
    ema_model = restore_ema_model(prefix, config, shape, nclass, heads)
    module, signatures = serving_module(ema_model, shape, names, outlier_rule(heads))
    images_seen = int(reader.get_tensor(_IMAGES_SEEN)) if _IMAGES_SEEN in shapes else None
    info = dict(
        checkpoint=os.path.abspath(prefix),
        images_seen=images_seen,
        **config,
        image_shape=list(shape),
        class_names=names,
        outlier_score=outlier_rule(heads),
        signatures=[SERVING, DECODED],
    )
    _save_atomically(module, signatures, out, overwrite, info)
    return dict(info, out=out)


def _save_atomically(module, signatures, out, overwrite, info):
    with temporary_file(out, folder=True) as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
        os.makedirs(os.path.join(tmp, 'assets.extra'), exist_ok=True)
        with open(os.path.join(tmp, 'assets.extra', 'export.json'), 'w') as f:
            json.dump(info, f, indent=2)
            f.write('\n')
        check_writable(out, overwrite)
        with temporary_file(out, folder=True) as old:
            if os.path.exists(out):
                os.replace(out, os.path.join(old, 'export'))
            os.replace(tmp, out)


# --------------------------------------------------------------------------- loading


def is_saved_model(path):
    """True when `path` is a SavedModel folder (holds saved_model.pb)."""
    return os.path.isfile(os.path.join(path, 'saved_model.pb'))


class Served:
    """An exported model loaded back: `class_names` (list of K str), `shape` (H, W, C) and three predictors.

    `served(images)`: float [N, H, W, C] in [0, 1] (numpy or tensor) -> numpy float32 [N, K].
    `served.model_range(images)`: images already scaled to [-1, 1] -> {'probabilities': numpy [N, K],
        'outlier_score': numpy [N] for a model with open-set heads} (what
        `libml.serve.inference.predict_files` feeds its `predict` callable).
    `served.encoded(blobs)`: list of N encoded images (bytes, any size) -> numpy float32 [N, K],
        decoded and resized by the export's own graph.
    """

    def __init__(self, path):
        if not is_saved_model(path):
            raise UserError(f"{path} is not a SavedModel folder (no saved_model.pb): pass scripts/export.py's output")
        try:
            self._loaded = tf.saved_model.load(path)
            self._encoded = self._loaded.signatures[SERVING]
            self._decoded = self._loaded.signatures[DECODED]
            self.class_names = [n.decode() for n in self._loaded.class_names.numpy()]
            self.shape = tuple(int(v) for v in self._loaded.image_shape.numpy())
        except (KeyError, AttributeError) as e:
            raise UserError(f'{path} is a SavedModel but not one written by scripts/export.py (missing {e})') from None
        except (tf.errors.OpError, ValueError, OSError) as e:
            raise UserError(f'cannot load SavedModel {path} ({first_line(e)})') from None

    def __call__(self, images):
        images = tf.cast(images, tf.float32)
        return self._decoded(images=images)['probabilities'].numpy()

    def model_range(self, images):
        return {k: v.numpy() for k, v in self._loaded.model_range_outputs(tf.cast(images, tf.float32)).items()}

    def encoded(self, blobs):
        try:
            return self._encoded(images=tf.constant(list(blobs), tf.string))['probabilities'].numpy()
        except tf.errors.InvalidArgumentError as e:
            raise UserError(f'cannot decode an image ({first_line(e)[:200]})') from None


def load_serving(path):
    """The SavedModel at `path` as a `Served` predictor (UserError when it is not an export)."""
    return Served(path)
