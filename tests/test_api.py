"""The Python API gives what the command line gives: logits, flip metrics and gates, checked by hand and
against the CLI on the same files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelupdate import api
from modelupdate.data import load_dataset
from modelupdate.errors import ConfigError


def test_predict_images_equals_predict_on_the_split(trained_model, tiny_data_config):
    cfg = tiny_data_config()
    loaded = api.load(trained_model)
    test = load_dataset(cfg).test
    on_split = api.predict(trained_model, cfg)
    logits = api.predict_images(loaded, test.images, batch_size=50)  # several batches
    assert logits.shape == (len(test.targets), loaded.meta.num_classes)
    np.testing.assert_allclose(logits, on_split.logits, rtol=1e-5, atol=1e-5)
    as_float = api.predict_images(loaded, test.images.float() / 255)
    np.testing.assert_allclose(as_float, logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"images: expected shape \[N, 1, 8, 8\]"):
        api.predict_images(loaded, test.images[:, :, :4])
    with pytest.raises(ConfigError, match="float pixels must be finite and in 0..1"):
        api.predict_images(loaded, test.images.float())  # 0..255 as floats: a common mistake
    with pytest.raises(ConfigError, match="dtype torch.int64"):
        api.predict_images(loaded, test.images.long())


def test_flip_metrics_and_gates_by_hand():
    old, new, targets = np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    # old right on samples 0, 1; new right on 0, 3: one negative flip (1), one positive (3)
    summary = api.flip_metrics(old, new, targets)
    assert (summary.counts.negative_flips, summary.counts.positive_flips) == (1, 1)
    assert summary.nfr.value == 0.25 and summary.pfr.value == 0.25 and summary.er_new.value == 0.5
    assert summary.btc.value == 0.5  # old-correct kept: 1 of 2
    assert [r.passed for r in api.check_gates(summary, max_nfr="30%", max_er="40%")] == [True, False]
    assert api.failed_gates(api.check_gates(summary, max_nfr="20%")) == ["max-nfr"]
    rows = api.per_class(old, new, targets)
    assert [(r.n, r.negative_flips, r.positive_flips) for r in rows] == [(2, 0, 0), (2, 1, 1)]
    with pytest.raises(ConfigError, match="targets: needed"):
        api.flip_metrics(old, new)
    with pytest.raises(ConfigError, match="one length"):
        api.flip_metrics(old, new[:3], targets)
    with pytest.raises(ConfigError, match="new: expected class indices"):
        api.flip_metrics(old, new - 1, targets)
    with pytest.raises(ConfigError, match="targets: expected class indices"):
        api.flip_metrics(old, new, targets.astype(float))


def test_import_takes_string_paths(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    save_file(torchvision.models.resnet18(num_classes=2).state_dict(), str(tmp_path / "w.safetensors"))
    spec = api.ImportSpec(arch="torchvision.models:resnet18", weights=str(tmp_path / "w.safetensors"),
                          classes=["a", "b"], input_shape=(3, 32, 32), mean=[0.5] * 3, std=[0.25] * 3)
    result = api.import_model(spec, str(tmp_path / "m.safetensors"))
    assert api.info(result.out).classes == ["a", "b"]


def test_flip_metrics_on_predictions_match_by_id_and_equal_the_cli(tmp_path, run_cli):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 40)
    old_logits, new_logits = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    old = api.Predictions.from_arrays(np.arange(40), targets, logits=old_logits)
    order = rng.permutation(40)  # the new file lists the samples in another order: sample i is row order == i
    new = api.Predictions.from_arrays(order, targets[order], logits=new_logits[order])
    summary = api.flip_metrics(old, new)
    negative = int(((old_logits.argmax(1) == targets) & (new_logits.argmax(1) != targets)).sum())
    assert summary.counts.n == 40 and summary.counts.negative_flips == negative
    api.write_predictions(tmp_path / "old.npz", old)
    api.write_predictions(tmp_path / "new.npz", new)
    code, out, err = run_cli("flip-report", "--old", tmp_path / "old.npz", "--new", tmp_path / "new.npz", "--json", "-")
    assert code == 0, err
    report = json.loads(out)
    assert report["counts"]["negative_flips"] == summary.counts.negative_flips
    assert report["metrics"]["nfr"]["value"] == pytest.approx(summary.nfr.value)
    assert report["mcnemar_p"] == pytest.approx(summary.mcnemar_p)
