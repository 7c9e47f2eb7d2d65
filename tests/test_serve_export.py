"""scripts/export.py and libml/serve/export.py: a SavedModel of the EMA weights that serves with TensorFlow alone.

Checkpoints are written here exactly as the training loop writes them (model, ema_model,
optimizer, images_seen), with raw-model batch-norm statistics that differ from the EMA model's
stale ones, so an export that forgets to copy them gives other probabilities. References are
computed in this process from the models themselves and from Pillow (libml.data.image_files.load_image),
never through libml/serve/export.py.
"""

import json
import os
import subprocess
import sys

from libml import models
from libml.data import image_files
from libml.errors import UserError
from libml.serve import export

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_cli
from PIL import Image

NCLASS = {'grey': 3, 'rgb': 5}
SHAPE = {'grey': (16, 16, 1), 'rgb': (8, 8, 3)}
DATASET = {'grey': 'pets.1@30-10', 'rgb': 'shapes.2@20-5'}
PETS = ['cat', 'dog', 'owl']


def _tiny_models(shape, nclass, seed):
    """(raw model, EMA model): EMA weights = raw + noise, raw batch-norm statistics randomised, EMA's left stale."""
    tf.random.set_seed(seed)
    model = models.create_model('resnet', nclass, shape, filters=8, repeat=1)
    ema_model = models.create_model('resnet', nclass, shape, filters=8, repeat=1)
    for raw, ema in zip(model.variables, ema_model.variables):
        if raw.trainable:
            ema.assign(raw + tf.random.normal(raw.shape, stddev=0.05))
        elif 'moving_mean' in raw.name:
            raw.assign(tf.random.normal(raw.shape, stddev=0.5))
        else:
            raw.assign(tf.random.uniform(raw.shape, 0.2, 3.0))
    return model, ema_model


def _write_run(run_dir, model, ema_model, args):
    """A run folder as the training loop leaves it: tf/model.ckpt-<images> and args/args.json."""
    optimizer = tf.Module()
    optimizer.step = tf.Variable(7, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(
        model=model, ema_model=ema_model, optimizer=optimizer, images_seen=tf.Variable(3072, dtype=tf.int64)
    )
    checkpoint.write(os.path.join(run_dir, 'tf', 'model.ckpt-0000003072'))
    if args is not None:
        os.makedirs(os.path.join(run_dir, 'args'))
        with open(os.path.join(run_dir, 'args', 'args.json'), 'w') as f:
            json.dump(args, f)


def _reference(model, ema_model, pixels):
    """EMA probabilities with the raw model's batch-norm statistics, copied here by hand.

    pixels: uint8 [N, H, W, C] -> (probabilities [N, K], probabilities with the stale EMA statistics).
    """
    x = tf.image.convert_image_dtype(pixels, tf.float32) * 2.0 - 1.0
    stale = tf.nn.softmax(ema_model(x, training=False)).numpy()
    copy = models.create_model('resnet', model.head.bias.shape[0], pixels.shape[1:], filters=8, repeat=1)
    for dst, ema, raw in zip(copy.variables, ema_model.variables, model.variables):
        dst.assign(ema if ema.trainable else raw)
    return tf.nn.softmax(copy(x, training=False)).numpy(), stale


def _save(path, array, fmt, **options):
    array = array[:, :, 0] if array.shape[2] == 1 else array
    Image.fromarray(array).save(path, format=fmt, **options)
    return str(path)


def _images(folder, kind, rng):
    """Real image files for a model: PNGs at its size, then a JPEG, a BMP and a GIF of other sizes."""
    height, width, channels = SHAPE[kind]
    files = [
        _save(folder / f'{kind}{i}.png', rng.integers(0, 256, (height, width, channels), dtype=np.uint8), 'PNG')
        for i in range(3)
    ]
    smooth = np.clip(rng.normal(128, 60, (23, 37, 3)), 0, 255).astype(np.uint8)
    files.append(_save(folder / f'{kind}_photo.jpg', smooth, 'JPEG', quality=85))  # shrunk, horizontal pass first
    files.append(_save(folder / f'{kind}_small.bmp', rng.integers(0, 256, (5, 11, 3), dtype=np.uint8), 'BMP'))
    grey = rng.integers(0, 256, (31, 6, 1), dtype=np.uint8)
    files.append(_save(folder / f'{kind}_tall.gif', grey, 'GIF'))  # rows shrink, columns stretch: vertical pass first
    return files


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two exported runs: 'grey' (16x16x1, 3 named classes) by ./scripts/export.py, 'rgb' (8x8x3, no
    class mapping) by libml.serve.export.export; with their models, image files and reference probabilities."""
    base = tmp_path_factory.mktemp('export')
    root = base / 'ml_data'
    root.mkdir()
    (root / 'pets_class_mappings.json').write_text(json.dumps(dict(enumerate(PETS))))
    rng = np.random.default_rng(0)
    out = {}
    for seed, kind in enumerate(('grey', 'rgb')):
        run_dir = base / 'experiments' / DATASET[kind] / f'RealMix_{kind}'
        model, ema_model = _tiny_models(SHAPE[kind], NCLASS[kind], seed)
        args = {
            'arch': 'resnet',
            'filters': 8,
            'repeat': 1,
            'scales': 0,
            'bn_momentum': 0.99,
            'dataset': DATASET[kind],
            'img_size': SHAPE[kind][0],
            'class_mapping': '',
        }
        _write_run(str(run_dir), model, ema_model, args)
        files = _images(base, kind, rng)
        pixels = np.stack([image_files.load_image(f, size=SHAPE[kind][0], channels=SHAPE[kind][2]) for f in files])
        probs, stale = _reference(model, ema_model, pixels)
        out[kind] = {
            'run_dir': str(run_dir),
            'files': files,
            'pixels': pixels,
            'probs': probs,
            'stale': stale,
            'export': str(run_dir / 'export'),
        }
    env = dict(
        os.environ,
        ML_DATA=str(root),
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
        TF_CPP_MIN_LOG_LEVEL='3',
    )
    env.pop('PYTHONPATH', None)
    proc = subprocess.run(
        ['./scripts/export.py', out['grey']['run_dir']], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    out['grey']['stdout'] = proc.stdout
    notices = []
    info = export.export(out['rgb']['run_dir'], root=str(root), log=notices.append)
    out['rgb'].update(info=info, notices=notices)
    out['root'] = root
    return out


_LOADER = r"""
import importlib.util, json, sys
sys.path.append(sys.argv[1])  # site-packages only: no .pth files, so not the editable install of this repo
assert importlib.util.find_spec('libml') is None, 'libml is importable'
try:
    import libml  # noqa: F401
    raise SystemExit('libml is importable')
except ImportError:
    pass
import numpy as np
import tensorflow as tf
for job in json.loads(sys.argv[2]):
    model = tf.saved_model.load(job['export'])
    blobs = [open(f, 'rb').read() for f in job['files']]
    served = model.signatures['serving_default'](images=tf.constant(blobs))
    decoded = model.signatures['serving_decoded'](images=tf.constant(np.load(job['decoded'])))
    text = lambda t: np.array([s.decode() for s in t.numpy()])
    np.savez(job['out'], probabilities=served['probabilities'].numpy(), classes=text(served['classes']),
             class_ids=served['class_ids'].numpy(), class_names=text(served['class_names']),
             decoded=decoded['probabilities'].numpy(), shape=model.image_shape.numpy())
"""


@pytest.fixture(scope='module')
def served(runs, tmp_path_factory):
    """What each export answers when loaded by TensorFlow alone in another process (outside the repository)."""
    work = tmp_path_factory.mktemp('serving')
    jobs = []
    for kind in ('grey', 'rgb'):
        decoded = work / f'{kind}_decoded.npy'
        np.save(decoded, runs[kind]['pixels'].astype(np.float32) / 255.0)
        jobs.append(
            {
                'export': runs[kind]['export'],
                'files': runs[kind]['files'],
                'decoded': str(decoded),
                'out': str(work / f'{kind}.npz'),
            }
        )
    site_packages = os.path.dirname(os.path.dirname(tf.__file__))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    proc = subprocess.run(
        [sys.executable, '-S', '-c', _LOADER, site_packages, json.dumps(jobs)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {kind: dict(np.load(job['out'])) for kind, job in zip(('grey', 'rgb'), jobs)}


@pytest.mark.parametrize('kind', ['grey', 'rgb'])
def test_served_probabilities_equal_the_ema_model(runs, served, kind):
    got, run = served[kind], runs[kind]
    # The batch-norm copy matters: the stale EMA statistics give clearly other probabilities.
    assert np.abs(run['stale'] - run['probs']).max() > 1e-2
    # PNGs at the model's size, and a JPEG, BMP and GIF of other sizes resized in the graph.
    np.testing.assert_allclose(got['probabilities'], run['probs'], atol=1e-5)
    np.testing.assert_allclose(got['decoded'], run['probs'], atol=1e-5)
    assert got['probabilities'].shape == (len(run['files']), NCLASS[kind]) and got['probabilities'].dtype == np.float32
    names = PETS if kind == 'grey' else [str(i) for i in range(NCLASS[kind])]
    assert list(got['class_names']) == names
    assert list(got['classes']) == [names[i] for i in run['probs'].argmax(1)]
    assert list(got['class_ids']) == list(run['probs'].argmax(1))
    assert list(got['shape']) == list(SHAPE[kind])


def test_cli_and_library_report(runs):
    assert 'input 16x16x1, 3 classes: cat, dog, owl' in runs['grey']['stdout']
    assert '3 kimg' in runs['grey']['stdout']
    mapping = os.path.join(str(runs['root']), 'shapes_class_mappings.json')
    assert runs['rgb']['notices'] == [f'notice: no class mapping ({mapping} not found): class names are the ids 0..4']
    info = runs['rgb']['info']
    assert info['image_shape'] == [8, 8, 3] and info['images_seen'] == 3072 and info['arch'] == 'resnet'
    with open(os.path.join(runs['rgb']['export'], 'assets.extra', 'export.json')) as f:
        extra = json.load(f)
    assert extra['class_names'] == [str(i) for i in range(5)]


def test_saved_model_cli_lists_the_signatures(runs):
    cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
    proc = subprocess.run(
        [cli, 'show', '--dir', runs['grey']['export'], '--all'],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    default = text[text.index("signature_def['serving_default']") :]
    assert 'dtype: DT_STRING' in default.split('outputs')[0] and 'shape: (-1)' in default.split('outputs')[0]
    for name in ('probabilities', 'classes', 'class_ids', 'class_names'):
        assert f"outputs['{name}']" in default
    assert "signature_def['serving_decoded']" in text and 'shape: (-1, 16, 16, 1)' in text


def test_load_serving_for_inference(runs):
    run = runs['rgb']
    assert export.is_saved_model(run['export']) and not export.is_saved_model(run['run_dir'])
    model = export.load_serving(run['export'])
    assert model.shape == (8, 8, 3) and model.class_names == [str(i) for i in range(5)]
    x = run['pixels'].astype(np.float32) / 255.0
    np.testing.assert_allclose(model(x), run['probs'], atol=1e-5)
    assert list(model.model_range(x * 2 - 1)) == ['probabilities']  # no outlier score without open-set heads
    np.testing.assert_allclose(model.model_range(x * 2 - 1)['probabilities'], run['probs'], atol=1e-5)
    blobs = []
    for path in run['files']:
        with open(path, 'rb') as f:
            blobs.append(f.read())
    np.testing.assert_allclose(model.encoded(blobs), run['probs'], atol=1e-5)
    assert model.encoded([]).shape == (0, 5)
    with pytest.raises(UserError, match='cannot decode an image'):
        model.encoded([b'not an image'])
    with pytest.raises(UserError, match='not a SavedModel'):
        export.load_serving(run['run_dir'])


_EMPTY_BATCH = r"""
import json, sys
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
model = tf.saved_model.load(sys.argv[1])
feeds = {'serving_default': tf.zeros([0], tf.string), 'serving_decoded': tf.zeros([0, 8, 8, 3])}
outputs = {name: model.signatures[name](images=images) for name, images in feeds.items()}
outputs['model_range'] = model.model_range_outputs(tf.zeros([0, 8, 8, 3]))
shapes = {name: {k: [v.shape.as_list(), v.dtype.name] for k, v in out.items()} for name, out in outputs.items()}
print(json.dumps({'onednn': bool(_pywrap_util_port.IsMklEnabled()), 'outputs': shapes}))
"""


@pytest.mark.parametrize('onednn', ['0', '1'])
def test_empty_batch_gives_empty_outputs(runs, onednn):
    # In a process of its own: TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads.
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL='3')
    command = [sys.executable, '-c', _EMPTY_BATCH, runs['rgb']['export']]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert got['onednn'] == (onednn == '1')
    served = {
        'probabilities': [[0, 5], 'float32'],
        'class_ids': [[0], 'int32'],
        'classes': [[0], 'string'],
        'class_names': [[5], 'string'],
    }
    assert got['outputs'] == {
        'serving_default': served,
        'serving_decoded': served,
        'model_range': {'probabilities': [[0, 5], 'float32']},
    }


# --------------------------------------------------------------------------- preprocessing against Pillow


# --------------------------------------------------------------------------- other runs and errors


@pytest.mark.parametrize('arch', ['resnet', 'convnet', 'shake'])
def test_architecture_from_checkpoint(tmp_path, arch):
    build = lambda: models.create_model(arch, 4, (16, 16, 3), filters=8, repeat=2, scales=2)
    prefix = tf.train.Checkpoint(model=build(), ema_model=build()).write(str(tmp_path / 'model.ckpt-0000000000'))
    _, shapes = export.read_checkpoint(prefix)
    repeat = 1 if arch == 'convnet' else 2
    assert export.architecture_from_checkpoint(shapes) == {'arch': arch, 'filters': 8, 'repeat': repeat, 'scales': 2}


def test_checkpoint_without_args_json(tmp_path):
    """A bare checkpoint (no args.json, no dataset): architecture from its variables, size from --img_size."""
    model, ema_model = _tiny_models((16, 16, 1), 3, seed=5)
    run_dir = tmp_path / 'copied'
    _write_run(str(run_dir), model, ema_model, args=None)
    with pytest.raises(UserError, match='pass --img_size'):
        export.export(str(run_dir / 'tf' / 'model.ckpt-0000003072.index'), log=lambda _: None)
    notices = []
    info = export.export(
        str(run_dir / 'tf' / 'model.ckpt-0000003072.index'),
        out=str(tmp_path / 'served'),
        img_size=16,
        log=notices.append,
    )
    assert info['out'] == str(tmp_path / 'served') and info['scales'] == 2
    assert notices[0].startswith('notice: no args/args.json') and 'ids 0..2' in notices[1]
    pixels = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    expected, _ = _reference(model, ema_model, pixels)
    np.testing.assert_allclose(export.load_serving(info['out'])(pixels / 255.0), expected, atol=1e-5)


def test_overwrite_is_explicit_and_atomic(runs, tmp_path):
    run = runs['rgb']
    with pytest.raises(UserError, match='already exists: pass --overwrite'):
        export.export(run['run_dir'], root=str(runs['root']), log=lambda _: None)
    out = tmp_path / 'replaced'
    out.mkdir()
    (out / 'saved_model.pb').write_bytes(b'an older export')
    (out / 'stale.txt').write_text('old export')
    export.export(run['run_dir'], out=str(out), overwrite=True, root=str(runs['root']), log=lambda _: None)
    assert export.is_saved_model(str(out)) and not (out / 'stale.txt').exists()
    assert sorted(os.listdir(tmp_path)) == ['replaced']  # no temporary or old folder left behind


def test_bad_inputs_are_one_line_errors(runs, tmp_path):
    with pytest.raises(UserError, match='not found: pass a run folder'):
        export.export(str(tmp_path / 'nowhere'))
    (tmp_path / 'empty_run' / 'tf').mkdir(parents=True)
    with pytest.raises(UserError, match='no checkpoint found'):
        export.export(str(tmp_path / 'empty_run'))
    wrong = tmp_path / 'wrong'
    model, ema_model = _tiny_models((8, 8, 3), 5, seed=1)
    _write_run(
        str(wrong),
        model,
        ema_model,
        {'arch': 'resnet', 'filters': 16, 'repeat': 1, 'scales': 0, 'img_size': 8, 'dataset': 'shapes.2@20-5'},
    )
    with pytest.raises(UserError, match='does not fit resnet filters=16'):
        export.export(str(wrong), log=lambda _: None)
    assert not (wrong / 'export').exists()
    corrupt = tmp_path / 'corrupt'
    _write_run(str(corrupt), model, ema_model, None)
    (corrupt / 'tf' / 'model.ckpt-0000003072.index').write_bytes(b'not a checkpoint index')
    proc = run_cli(['scripts/export.py', corrupt], check=False)
    assert proc.returncode == 1 and proc.stderr.startswith('error: checkpoint ') and 'unreadable' in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_export_replaces_only_an_export(trained, tmp_path):
    _, run_dir, _ = trained
    precious = tmp_path / 'notes.txt'
    precious.write_text('not an export')
    with pytest.raises(UserError, match='notes.txt exists and is not an export'):
        export.export(run_dir, out=str(precious), overwrite=True)
    assert precious.read_text() == 'not an export'


def test_iomatch_export_serves_the_open_heads_outlier_probability(tmp_path):
    heads = models.Heads(ova=True, open=True, projection=16)
    build = lambda: models.create_model('resnet', 4, (8, 8, 3), filters=8, repeat=1, heads=heads)
    raw, ema = build(), build()
    for variable in raw.variables:  # batch-norm statistics the export must copy into the EMA model
        if not variable.trainable:
            variable.assign(tf.random.uniform(variable.shape, 0.5, 2.0))
    run_dir = tmp_path / 'IOMatch_run'
    prefix = tf.train.Checkpoint(model=raw, ema_model=ema).write(str(run_dir / 'tf' / 'model.ckpt-0000001024'))
    _, shapes = export.read_checkpoint(prefix)
    assert export.heads_from_checkpoint(shapes) == heads
    info = export.export(str(run_dir), img_size=8, log=lambda _: None)
    assert info['outlier_score'] == 'open'
    x = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    for dst, src in zip(ema.variables, raw.variables):
        if not src.trainable:
            dst.assign(src)
    z = ema.outputs(tf.constant(x), training=False)['open'].numpy().astype(np.float64)
    expected = np.exp(z[:, -1]) / np.exp(z).sum(1)
    served = export.load_serving(info['out']).model_range(x)
    np.testing.assert_allclose(served['outlier_score'], expected, atol=1e-5)
