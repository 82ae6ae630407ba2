"""Architecture registry: every model builds and maps images to logits; custom factories; errors."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from modelupdate.errors import ConfigError
from modelupdate.models import ARCHS, build_model, count_parameters, known_archs


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)], ids=["1x28", "3x32"])
def test_every_registered_arch_runs_forward(arch, input_shape):
    torch.manual_seed(0)
    model = build_model(arch, 7, input_shape).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, *input_shape))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_small_cnn_trains_in_train_mode():
    """A backward pass through cnn-s in train mode (BatchNorm with batch statistics) gives gradients."""
    model = build_model("cnn-s", 3, (1, 12, 12)).train()
    model(torch.randn(4, 1, 12, 12)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_cnn_m_is_larger_than_cnn_s():
    small = count_parameters(build_model("cnn-s", 10, (1, 28, 28)))
    medium = count_parameters(build_model("cnn-m", 10, (1, 28, 28)))
    assert medium > 4 * small  # ~0.44M vs ~0.11M: both carry most of their weights in a flatten head


def test_cnn_s_parameter_count_by_hand():
    # 28x28 input; stages [[16], [32]], a 2x2 max-pool after both (28 -> 14 -> 7), flatten head:
    #   conv 1->16 (3x3, no bias)      1 * 16 * 9      =     144
    #   BN(16) (weight + bias)         2 * 16          =      32
    #   conv 16->32                    16 * 32 * 9     =   4,608
    #   BN(32)                         2 * 32          =      64
    #   linear 32*7*7=1568 -> 64       1568 * 64 + 64  = 100,416
    #   linear 64 -> 10                64 * 10 + 10    =     650
    #                                           total    105,914
    expected = 1 * 16 * 9 + 2 * 16 + 16 * 32 * 9 + 2 * 32 + (32 * 7 * 7) * 64 + 64 + 64 * 10 + 10
    assert expected == 105_914
    assert count_parameters(build_model("cnn-s", 10, (1, 28, 28))) == expected


def test_cnn_m_parameter_count_by_hand():
    # 28x28 input; stages [[16], [32, 32], [64]], max-pool after all stages but the last (28 -> 14 -> 7):
    #   conv 1->16 + BN(16)            144 + 32          =     176
    #   conv 16->32 + BN(32)           4,608 + 64        =   4,672
    #   conv 32->32 + BN(32)           9,216 + 64        =   9,280
    #   conv 32->64 + BN(64)           18,432 + 128      =  18,560
    #   linear 64*7*7=3136 -> 128      3136 * 128 + 128  = 401,536
    #   linear 128 -> 10 (dropout: no weights)  1,280 + 10 =  1,290
    #                                             total     435,514
    expected = (1 * 16 * 9 + 2 * 16) + (16 * 32 * 9 + 2 * 32) + (32 * 32 * 9 + 2 * 32) + (32 * 64 * 9 + 2 * 64) \
        + (64 * 7 * 7) * 128 + 128 + 128 * 10 + 10
    assert expected == 435_514
    model = build_model("cnn-m", 10, (1, 28, 28))
    assert count_parameters(model) == expected
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.25]


def test_arch_args_are_passed_to_the_factory():
    wide = build_model("cnn-s", 10, (1, 28, 28), {"width": 32})
    convs = [m for m in wide.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]  # stages (width, 2 * width)
    assert [m for m in wide.modules() if isinstance(m, torch.nn.Linear)][-1].out_features == 10
    with pytest.raises(ConfigError, match="takes no argument .depth."):
        build_model("cnn-s", 10, (1, 28, 28), {"depth": 3})


def test_custom_factory_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "my_models_for_test.py").write_text(textwrap.dedent("""
        from torch import nn

        def linear(num_classes, input_shape, hidden=5):
            c, h, w = input_shape
            return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.Linear(hidden, num_classes))

        not_callable = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("my_models_for_test:linear", 4, (1, 6, 6), {"hidden": 9})
    assert model(torch.randn(3, 1, 6, 6)).shape == (3, 4)
    assert model[1].out_features == 9
    with pytest.raises(ConfigError, match="has no callable 'not_callable'"):
        build_model("my_models_for_test:not_callable", 4, (1, 6, 6))
    with pytest.raises(ConfigError, match="has no callable 'missing'"):
        build_model("my_models_for_test:missing", 4, (1, 6, 6))
    sys.modules.pop("my_models_for_test", None)


def test_custom_factory_module_not_found():
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        build_model("no_such_module_xyz:factory", 4, (1, 6, 6))


def test_unknown_arch_lists_known_names():
    with pytest.raises(ConfigError) as err:
        build_model("resnet9000", 10, (1, 28, 28))
    message = str(err.value)
    assert "resnet9000" in message
    for name in ("cnn-s", "cnn-m", "tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v3_small",
                 "efficientnet_b0", "convnext_tiny"):
        assert name in message
    assert known_archs() == sorted(ARCHS)


def test_small_input_stem_keeps_resolution():
    """resnet on 32 px: a 3x3 stride-1 stem and no max-pool, so the first stage sees 32x32."""
    model = build_model("resnet18", 10, (3, 32, 32))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.conv1.in_channels == 3
    assert build_model("resnet18", 10, (1, 28, 28)).conv1.in_channels == 1


@pytest.mark.parametrize("arch, at_least", [("cnn-m", 1), ("mobilenet_v3_small", 1), ("efficientnet_b0", 2)])
def test_set_dropout_turns_off_every_dropout_layer(arch, at_least):
    """cnn-m's head, MobileNet's classifier, EfficientNet's classifier and stochastic depth."""
    from modelupdate.models import set_dropout

    model = build_model(arch, 5, (3, 32, 32)).train()
    assert set_dropout(model, 0.0) >= at_least
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(2)
    assert torch.equal(first, model(x)), "train mode is deterministic once dropout is off"
    plain = build_model("cnn-m", 5, (3, 32, 32)).train()
    torch.manual_seed(1)
    a = plain(x)
    torch.manual_seed(2)
    assert not torch.equal(a, plain(x)), "cnn-m keeps its dropout unless told"
