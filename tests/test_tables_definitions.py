"""The tables' cells: Fashion-MNIST's flags over the methods' defaults (libml/tables/definitions.py)."""

import os

from libml.tables.cells import Runner
from libml.tables.definitions import fashion_cell

import algorithms

algorithms.load()  # the methods the tables name, registered by their algorithm files


def test_fashion_cells_train_with_their_own_flags_over_the_methods_defaults(tmp_path):
    runner = Runner(tmp_path, tmp_path)
    cells = {
        m: fashion_cell(runner, m, (), 'fashion_mnist.1@250-500')
        for m in ('MixMatch', 'RealMix', 'FixMatch', 'FlexMatch', 'UDA', 'VAT', 'Supervised', 'OpenMatch', 'IOMatch')
    }
    folder = {m: os.path.basename(runner._key(c, 1)[0]) for m, c in cells.items()}
    # The cell's --w_match=25 wins over the methods' 75; --mixed_precision names the folder; VAT stays float32.
    assert '_w_match25.0_' in folder['MixMatch'] and '_tsanone_' in folder['MixMatch'], folder
    assert '_w_match25.0_' in folder['RealMix'] and '_tsalinear_schedule_' in folder['RealMix'], folder
    assert all('_mixed_precisionTrue_' in folder[m] for m in ('MixMatch', 'RealMix', 'FixMatch', 'Supervised'))
    assert '_mixed_precision' not in folder['VAT']
    assert (cells['FixMatch'].kimg, cells['MixMatch'].kimg, cells['Supervised'].kimg) == (160, 192, 384)
    assert cells['FlexMatch'].kimg == cells['UDA'].kimg == 160  # FixMatch's loop recipe, FixMatch's length
    assert (cells['IOMatch'].kimg, cells['OpenMatch'].kimg) == (160, 192)  # IOMatch's step costs FixMatch's
    # The open-set methods' recipes for short schedules: OpenMatch selects at 8 kimg, then every 4.
    assert '_select_kimg4_start_fix_kimg8_' in folder['OpenMatch'] and '_open_start_kimg1_' in folder['IOMatch']
    assert all('--report_kimg=4' in c.schedule for c in cells.values())  # last 10 reports = the last 40 kimg
