"""pi_model.py and mean_teacher.py: the loss on a fixed tiny batch against numpy (docs/algorithms.md#pi-model)."""

import pytest
from linear_step import ramp, run_loss, setup, softmax, supervised

import mean_teacher
import pi_model


@pytest.mark.parametrize(
    'cls, weight, teacher', [(pi_model.PiModel, 10.0, 'model'), (mean_teacher.MeanTeacher, 50.0, 'ema')]
)
def test_pi_model_and_mean_teacher(cls, weight, teacher):
    model, ema, x, labels, u, u_labels, step = setup()
    loss, stats = run_loss(cls, step, x, labels, u, u_labels)
    target = softmax((model if teacher == 'model' else ema).numpy(u[:, 0]))
    consistency = ((softmax(model.numpy(u[:, 1])) - target) ** 2).mean()
    expected = supervised(model, x, labels) + weight * ramp(step) * consistency
    assert stats['consistency'] == pytest.approx(consistency, rel=1e-5)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert stats['weight'] == pytest.approx(weight * 0.5)  # 1000 / (0.4 * 5000)
