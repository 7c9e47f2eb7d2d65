"""scripts/rename_files.py: in-place renaming to <index>_<class>.<ext>."""

import os

from conftest import run_cli

SCRIPT = 'scripts/rename_files.py'


def make(root, names):
    """Creates files (content = their original relative path) under `root`."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def tree(root):
    """{relative path: content} of every file under `root`."""
    return {
        os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f)).read()
        for d, _, files in os.walk(root)
        for f in files
    }


def assert_user_error(proc, *fragments):
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert proc.returncode == 1 and len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_renames_pngs_recursively_in_sorted_order(tmp_path):
    make(
        tmp_path, ['train/dog/b.png', 'train/cat/z.PNG', 'train/dog/a.png', 'test/hot_dog/x.png', 'train/dog/keep.jpg']
    )
    run_cli([SCRIPT, f'--targetdir={tmp_path}', '--index=10', '--filetype=png'])
    assert tree(tmp_path) == {
        'test/hot_dog/10_hot_dog.png': 'test/hot_dog/x.png',
        'train/cat/11_cat.PNG': 'train/cat/z.PNG',
        'train/dog/12_dog.png': 'train/dog/a.png',
        'train/dog/13_dog.png': 'train/dog/b.png',
        'train/dog/keep.jpg': 'train/dog/keep.jpg',  # another type: untouched
    }


def test_jpg_includes_jpeg(tmp_path):
    make(tmp_path, ['cat/a.jpeg', 'cat/b.JPG', 'cat/c.png'])
    run_cli([SCRIPT, '--targetdir', str(tmp_path), '--filetype', 'jpg'])
    assert sorted(tree(tmp_path)) == ['cat/0_cat.jpeg', 'cat/1_cat.JPG', 'cat/c.png']


def test_dry_run_lists_and_changes_nothing(tmp_path):
    make(tmp_path, ['cat/a.png', 'dog/b.png'])
    proc = run_cli([SCRIPT, f'--targetdir={tmp_path}', '--dry_run'])
    assert f'{tmp_path}/cat/a.png -> {tmp_path}/cat/0_cat.png' in proc.stdout
    assert f'{tmp_path}/dog/b.png -> {tmp_path}/dog/1_dog.png' in proc.stdout
    assert tree(tmp_path) == {'cat/a.png': 'cat/a.png', 'dog/b.png': 'dog/b.png'}


def test_taken_target_name_refuses_and_loses_nothing(tmp_path):
    make(tmp_path, ['cat/0_cat.png', 'cat/a.png'])  # a.png sorts second -> 1_cat.png: fine
    make(tmp_path, ['dog/1_dog.png', 'dog/a.png'])  # 1_dog.png -> 2_dog.png, a.png -> 3_dog.png: fine
    make(tmp_path, ['fox/a.png', 'fox/5_fox.png'])  # 5_fox.png sorts first -> 4_fox.png, a.png -> 5_fox.png: taken
    before = tree(tmp_path)
    proc = run_cli([SCRIPT, f'--targetdir={tmp_path}'], check=False)
    assert_user_error(proc, 'fox/5_fox.png', 'taken', '--index')
    assert tree(tmp_path) == before


def test_file_outside_a_class_folder_and_missing_dir(tmp_path):
    make(tmp_path, ['loose.png', 'cat/a.png'])
    assert_user_error(run_cli([SCRIPT, f'--targetdir={tmp_path}'], check=False), 'loose.png', 'class folder')
    assert sorted(tree(tmp_path)) == ['cat/a.png', 'loose.png']
    assert_user_error(run_cli([SCRIPT, f'--targetdir={tmp_path}/nope'], check=False), 'not found')
