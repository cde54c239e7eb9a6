"""Backbones: exact published parameter counts, both depthwise implementations, modes and dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nsnet_jax.models import count_params, create_backbone
from nsnet_jax.models.layers import DepthwiseConv, resolve_depthwise_impl, same_padding


def _param_count(name, **kw):
    model = create_backbone(name, num_classes=1000, **kw)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
    return count_params(shapes["params"])


@pytest.mark.parametrize(
    "name,expected",
    [
        ("resnet50", 25_557_032),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet101", 44_549_160),
        ("mobilenet_v2", 3_504_872),
        ("efficientnet_lite0", 4_652_008),
    ],
)
def test_published_parameter_counts(name, expected):
    assert _param_count(name) == expected


def test_mobilenet_width_multiplier_shrinks_the_network():
    # the 1280-d head and the classifier keep their size below width 1
    assert _param_count("mobilenet_v2", width=0.5) < 0.6 * _param_count("mobilenet_v2")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("padding", ["SAME", ((1, 1), (1, 1))])
def test_depthwise_shifted_equals_grouped(stride, kernel, padding):
    if padding != "SAME" and kernel == 5:
        padding = ((2, 2), (2, 2))
    x = jax.random.normal(jax.random.key(1), (2, 11, 10, 6))
    grouped = DepthwiseConv(kernel, stride, padding, impl="grouped")
    shifted = DepthwiseConv(kernel, stride, padding, impl="shifted")
    params = grouped.init(jax.random.key(2), x)
    assert params["params"]["kernel"].shape == (kernel, kernel, 1, 6)
    a = grouped.apply(params, x)
    b = shifted.apply(params, x)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mobilenet_v2"])
def test_whole_network_same_output_with_either_depthwise_impl(name):
    kw = {"width": 0.35} if name == "mobilenet_v2" else {}
    x = jax.random.uniform(jax.random.key(0), (2, 33, 33, 3)) * 255
    grouped = create_backbone(name, num_classes=7, depthwise_impl="grouped", **kw)
    shifted = create_backbone(name, num_classes=7, depthwise_impl="shifted", **kw)
    variables = jax.jit(grouped.init)(jax.random.key(1), x)
    np.testing.assert_allclose(
        jax.jit(grouped.apply)(variables, x),
        jax.jit(shifted.apply)(variables, x),
        rtol=1e-4,
        atol=1e-4,
    )


def test_tf_same_padding_is_asymmetric_on_even_totals():
    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(10, 5, 1) == (2, 2)


def test_auto_depthwise_is_shifted_on_cpu_and_bad_value_is_named():
    assert resolve_depthwise_impl("auto") == "shifted"
    with pytest.raises(ValueError, match="depthwise_impl='fast'"):
        resolve_depthwise_impl("fast")


@pytest.mark.parametrize(
    "name,kw,dim",
    [
        ("resnet18", {"width": 0.25}, 128),
        ("resnet50", {"width": 0.125}, 256),
        ("mobilenet_v2", {"width": 0.25}, 1280),
        ("patch_cnn", {}, 128),
    ],
)
def test_feature_mode_returns_pooled_features(name, kw, dim):
    model = create_backbone(name, num_classes=None, **kw)
    x = jnp.zeros((3, 32, 32, 3))
    out, _ = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
    assert out.shape == (3, dim) == (3, model.feature_dim)


def test_bfloat16_compute_keeps_float32_parameters():
    model = create_backbone("resnet18", num_classes=4, width=0.125, dtype=jnp.bfloat16)
    init = jax.eval_shape(model.init_with_output, jax.random.key(0), jnp.ones((2, 32, 32, 3)))
    out, variables = init
    assert out.dtype == jnp.bfloat16
    leaves = jax.tree_util.tree_leaves(variables["params"])
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="backbone='resnet51'.*resnet50"):
        create_backbone("resnet51", num_classes=10)
