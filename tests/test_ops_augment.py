"""Keras 3's random image layers (RandomFlip, RandomTranslation, RandomRotation, RandomZoom,
RandomCrop, RandomContrast) as fastnn.ops.augment: against fastnn.reference.augment on every
backend (test_ops.py's harness and tolerance) for every mode, fill mode and interpolation
on awkward shapes; inference (the identity, and crop's centred crop and resize); the draws'
determinism (same stream same bits, any CPU thread count, the CPU's bits on CUDA where the
arithmetic is exact); transforms checked against what they must be (rot90, np.roll, a
window copy); the same fixed transforms against real Keras where it imports; bad arguments.

    pytest tests/test_ops_augment.py          # every backend (cuda skips without a GPU)
    pytest -m gpu tests/test_ops_augment.py   # the cuda backend only
"""
import numpy as np
import pytest

import fastnn
from fastnn import _C, ops
from fastnn import reference as ref
from test_ops import assert_close, backend, floats, rng_for, shape_id  # noqa: F401

FILL_MODES = ref.AUGMENT_FILL_MODES
INTERPOLATIONS = ref.AUGMENT_INTERPOLATIONS
# batch 1, channels 1, 3, 5, 17, odd and non-square sizes, a 1-pixel-wide image
SHAPES = [(1, 7, 9, 1), (3, 8, 8, 3), (2, 5, 11, 5), (2, 13, 6, 17), (4, 1, 6, 2),
          (5, 28, 28, 1)]


def spec_of(mode, **changes):
    """A full layer dict, as the engine passes it, for `mode` with Keras's defaults."""
    spec = {"type": "augment", "mode": mode, "fill_mode": "reflect", "fill_value": 0.0,
            "interpolation": "bilinear"}
    spec.update({
        "flip": {"flip_horizontal": True, "flip_vertical": True},
        "rotation": {"rotation": [-0.3, 0.3]},
        "zoom": {"zoom_height": [-0.4, 0.5], "zoom_width": None},
        "translation": {"translate_height": [-0.3, 0.4], "translate_width": [-0.5, 0.2]},
        "crop": {"crop": [4, 5]},
        "contrast": {"contrast": [0.4, 0.6], "value_range": [-2.0, 2.0]},
    }[mode])
    spec.update(changes)
    return spec


AFFINE_SPECS = {
    "rotation": spec_of("rotation"),
    "rotation_full_turn": spec_of("rotation", rotation=[-1.0, 1.0]),
    "zoom_tied": spec_of("zoom"),
    "zoom_in_only": spec_of("zoom", zoom_height=[-0.6, -0.1]),
    "zoom_both": spec_of("zoom", zoom_height=[-0.3, 0.8], zoom_width=[0.2, 1.0]),
    "translation": spec_of("translation"),
    "translation_far": spec_of("translation", translate_height=[-1.0, 1.0],
                               translate_width=[-1.0, 1.0]),
}
OTHER_SPECS = {
    "flip_both": spec_of("flip"),
    "flip_horizontal": spec_of("flip", flip_vertical=False),
    "flip_vertical": spec_of("flip", flip_horizontal=False),
    "flip_neither": spec_of("flip", flip_horizontal=False, flip_vertical=False),
    "contrast": spec_of("contrast"),
    "contrast_keras_default": spec_of("contrast", contrast=[0.0, 0.5], value_range=[0.0, 255.0]),
    "contrast_clipped": spec_of("contrast", contrast=[1.0, 1.0], value_range=[-0.5, 0.5]),
    "crop_smaller": spec_of("crop", crop=[3, 4]),
    "crop_one": spec_of("crop", crop=[1, 1]),
    "crop_same_height": spec_of("crop", crop=[7, 4]),
    "crop_larger": spec_of("crop", crop=[10, 12]),
    "crop_aspect": spec_of("crop", crop=[2, 9]),
}


def images(key, shape, scale=1.0):
    return floats(rng_for("augment", key, shape), *shape, scale=scale)


def run(x, spec, stream, training=True, device="cpu"):
    y = ops.augment(x, spec, stream, training, device=device)
    assert y.dtype == np.float32
    return y


# ---- every mode against the reference ------------------------------------------------------

@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("name", AFFINE_SPECS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_affine_modes(backend, shape, name, fill_mode, interpolation):
    spec = dict(AFFINE_SPECS[name], fill_mode=fill_mode, interpolation=interpolation,
                fill_value=0.75)
    x = images(name, shape)
    stream = 1000 + len(name)
    y = run(x, spec, stream, device=backend)
    expected = ref.augment(x, spec, stream)
    assert y.shape == x.shape
    if interpolation == "nearest":  # each output is an input value or the fill value
        np.testing.assert_array_equal(y, expected.astype(np.float32))
    else:
        assert_close(y, expected, f"{name} {fill_mode}")


@pytest.mark.parametrize("name", OTHER_SPECS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_flip_contrast_crop(backend, shape, name):
    spec = OTHER_SPECS[name]
    x = images(name, shape)
    for training in (True, False):
        y = run(x, spec, 77, training, device=backend)
        expected = ref.augment(x, spec, 77, training)
        assert y.shape == expected.shape
        if spec["mode"] == "flip" or (not training and spec["mode"] != "crop"):
            np.testing.assert_array_equal(y, x if not training else expected.astype(np.float32))
        else:
            assert_close(y, expected, f"{name} training={training}")


@pytest.mark.parametrize("mode", ref.AUGMENT_MODES)
def test_inference_is_the_identity(backend, mode):
    if mode == "crop":
        pytest.skip("crop's inference crops and resizes (test_crop_inference_resizes)")
    x = images("identity", (3, 9, 7, 5))
    x[0, 0, 0, 0] = np.inf
    x[1, 2, 3, 4] = np.nan  # copied as they are
    y = run(x, spec_of(mode), 5, training=False, device=backend)
    np.testing.assert_array_equal(y, x)


# ---- crop ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [(4, 5), (3, 9), (8, 3), (7, 9), (14, 9), (10, 12), (1, 1),
                                    (7, 4)], ids=shape_id)
def test_crop_inference_resizes(backend, target):
    """Keras's inference crop: the centred window of the target's aspect, resized (bilinear,
    half-pixel centres) to the target; a window of the target's size is copied."""
    x = images("crop_inference", (2, 7, 9, 3))
    spec = spec_of("crop", crop=list(target))
    y = run(x, spec, 0, training=False, device=backend)
    assert y.shape == (2, *target, 3)
    assert_close(y, ref.augment(x, spec, 0, training=False), f"crop {target}")
    top, left, crop_h, crop_w = ref.augment_crop_window(7, 9, *target, 0, False)
    if (crop_h, crop_w) == target:
        np.testing.assert_array_equal(y, x[:, top:top + crop_h, left:left + crop_w])
    # inference has no coins: any stream gives the same
    np.testing.assert_array_equal(y, run(x, spec, 123456789, training=False, device=backend))
    # a constant image stays constant through the resize
    c = np.full((1, 7, 9, 1), 3.25, np.float32)
    np.testing.assert_allclose(run(c, spec, 0, False, device=backend), 3.25, rtol=1e-6)


def test_crop_inference_known_values(backend):
    """8x8 -> 4x4 halves each axis: each output is the mean of a 2x2 block (the half-pixel
    centre falls between two inputs on each axis)."""
    x = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1)
    y = run(x, spec_of("crop", crop=[4, 4]), 0, training=False, device=backend)[0, :, :, 0]
    blocks = x[0, :, :, 0].reshape(4, 2, 4, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(y, blocks, rtol=1e-6)


def test_crop_training_is_one_window_per_batch(backend):
    x = images("crop_training", (6, 9, 11, 3))
    spec = spec_of("crop", crop=[4, 6])
    windows = set()
    for stream in range(12):
        y = run(x, spec, stream, device=backend)
        top, left, _, _ = ref.augment_crop_window(9, 11, 4, 6, stream, True)
        assert 0 <= top <= 9 - 4 and 0 <= left <= 11 - 6
        np.testing.assert_array_equal(y, x[:, top:top + 4, left:left + 6])
        windows.add((top, left))
    assert len(windows) > 3  # the offset is random


def test_crop_training_smaller_input_resizes(backend):
    """Training on an input not larger than the target on both axes takes inference's path."""
    x = images("crop_small", (2, 5, 7, 2))
    for target in ((6, 8), (5, 4), (4, 7)):
        spec = spec_of("crop", crop=list(target))
        np.testing.assert_array_equal(run(x, spec, 3, True, device=backend),
                                      run(x, spec, 3, False, device=backend))


# ---- the transforms themselves ------------------------------------------------------------

def test_flip_coin_flips_both_axes(backend):
    """One coin per image, flipping both axes ('horizontal_and_vertical'), as Keras's
    RandomFlip: each image is itself or its double mirror, about half of each."""
    x = images("flip", (64, 5, 6, 3))
    y = run(x, spec_of("flip"), 42, device=backend)
    flipped = ref.augment_parameters(spec_of("flip"), 42, 64, 5, 6)["flips"]
    for b in range(64):
        np.testing.assert_array_equal(y[b], x[b, ::-1, ::-1] if flipped[b] else x[b])
    assert 16 < flipped.sum() < 48


def test_rotation_quarter_turn_is_rot90(backend):
    x = images("rot90", (2, 6, 6, 3))
    for turns, k in ((0.25, 1), (0.5, 2), (-0.25, -1)):
        spec = spec_of("rotation", rotation=[turns, turns], interpolation="nearest")
        np.testing.assert_array_equal(run(x, spec, 0, device=backend),
                                      np.rot90(x, k, axes=(1, 2)))


def test_translation_by_whole_pixels_is_a_roll(backend):
    """wrap fill + a shift of whole pixels (2/8 of the height, -3/6 of the width): np.roll."""
    x = images("roll", (2, 8, 6, 3))
    spec = spec_of("translation", translate_height=[0.25, 0.25], translate_width=[-0.5, -0.5],
                   fill_mode="wrap")
    np.testing.assert_array_equal(run(x, spec, 0, device=backend),
                                  np.roll(x, (2, -3), axis=(1, 2)))
    # constant fill: the rows shifted in are fill_value
    spec = dict(spec, fill_mode="constant", fill_value=-7.0)
    y = run(x, spec, 0, device=backend)
    assert (y[:, :2] == -7.0).all() and (y[:, :, 3:] == -7.0).all()
    np.testing.assert_array_equal(y[:, 2:, :3], x[:, :6, 3:])


def test_zoom_of_one_is_the_identity(backend):
    x = images("zoom1", (3, 7, 5, 2))
    for interpolation in INTERPOLATIONS:
        spec = spec_of("zoom", zoom_height=[0.0, 0.0], interpolation=interpolation)
        np.testing.assert_array_equal(run(x, spec, 9, device=backend), x)


def test_contrast_scales_about_the_mean(backend):
    x = images("contrast_mean", (4, 6, 5, 3)) + 10
    spec = spec_of("contrast", contrast=[0.5, 0.5], value_range=[-1e9, 1e9])
    y = run(x, spec, 11, device=backend)
    factor = ref.augment_parameters(spec, 11, 4, 6, 5)["contrast"]
    assert ((factor >= 0.5) & (factor < 1.5)).all() and len(set(factor)) == 4  # per image
    mean = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y.mean(axis=(1, 2), keepdims=True), mean, rtol=1e-5)
    assert_close(y - mean, (x - mean) * factor[:, None, None, None], "y - mean")


def test_draws_follow_the_documented_coins():
    """u = (splitmix64(stream + 16 * image + quantity) >> 40) * 2**-24 (augment.h)."""
    from fastnn.reference_net import _splitmix64_int
    stream = 2**64 - 5  # wraps
    for image, quantity in ((0, ref.AUGMENT_ROTATION), (3, ref.AUGMENT_CONTRAST)):
        z = (stream + 16 * image + quantity) % 2**64
        u = (_splitmix64_int(z) >> 40) * 2.0 ** -24
        assert ref.augment_coins(stream, image + 1, quantity)[image] == u
    rotation = ref.augment_parameters(spec_of("rotation"), stream, 4, 5, 7)["matrices"]
    u = ref.augment_coins(stream, 4, ref.AUGMENT_ROTATION)
    angle = (-0.3 + u * 0.6) * 2 * np.pi
    np.testing.assert_allclose(rotation[:, [0, 1, 3, 4]],
                               np.stack([np.cos(angle), -np.sin(angle), np.sin(angle),
                                         np.cos(angle)], 1), rtol=1e-12, atol=1e-15)


def test_reference_fill_modes_match_keras_table():
    """Keras's docs: reflect (d c b a | a b c d | d c b a), wrap (a b c d | a b c d | a b c d),
    nearest (a a a a | a b c d | d d d d)."""
    index = np.arange(-4, 8)
    np.testing.assert_array_equal(ref._fix_index(index, 4, "reflect"),
                                  [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0])
    np.testing.assert_array_equal(ref._fix_index(index, 4, "wrap"),
                                  [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(ref._fix_index(index, 4, "nearest"),
                                  [0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3])


# ---- determinism --------------------------------------------------------------------------

ALL_SPECS = {**AFFINE_SPECS, **OTHER_SPECS}


@pytest.mark.parametrize("name", ALL_SPECS)
def test_same_stream_same_bits(backend, name):
    spec = ALL_SPECS[name]
    x = images("bits", (12, 9, 7, 3))
    a, b = run(x, spec, 31337, device=backend), run(x, spec, 31337, device=backend)
    np.testing.assert_array_equal(a, b)
    if name not in ("flip_neither", "crop_larger", "crop_aspect"):  # those draw nothing here
        others = [run(x, spec, stream, device=backend) for stream in (31338, 2**64 - 1)]
        assert not all(np.array_equal(a, o) for o in others), "the stream changes nothing"


@pytest.mark.parametrize("name", ["rotation", "zoom_both", "translation", "flip_both",
                                  "contrast", "crop_smaller", "crop_larger"])
def test_same_bits_any_threads(name, restore_runtime):
    spec = ALL_SPECS[name]
    x = images("threads", (33, 30, 29, 3))
    results = []
    for threads in (1, 2, 3, 7):
        fastnn.set_num_threads(threads)
        results.append(run(x, spec, 8))
    for result in results[1:]:
        np.testing.assert_array_equal(results[0], result)


@pytest.mark.gpu
@pytest.mark.skipif(fastnn.build_info()["cuda_devices"] == 0, reason="no CUDA GPU in this process")
@pytest.mark.parametrize("name", ALL_SPECS)
def test_cuda_gives_the_cpu_bits(name):
    """The same draws on both backends: exact copies and nearest sampling give the CPU's
    bits; bilinear sums and contrast agree to float rounding (FMA contraction differs)."""
    spec = ALL_SPECS[name]
    x = images("cpu_cuda", (4, 11, 9, 5))
    for nearest in (False, True):
        s = dict(spec, interpolation="nearest") if nearest else spec
        cpu, cuda = run(x, s, 99), run(x, s, 99, device="cuda")
        exact = spec["mode"] == "flip" or nearest and spec["mode"] != "crop" \
            and spec["mode"] != "contrast"
        if exact:
            np.testing.assert_array_equal(cpu, cuda)
        else:
            np.testing.assert_allclose(cuda, cpu, rtol=1e-5, atol=1e-5)


# ---- Keras, where it imports: the same fixed transforms -------------------------------------

@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras", reason="Keras is not installed in this environment")
    return keras


@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_keras_layers_with_fixed_factors(keras, fill_mode, interpolation):
    """A factor pair (f, f) draws f exactly, so Keras's layer and fastnn apply the same
    transform; and for random draws, Keras's affine_transform with fastnn's matrices."""
    L = keras.layers
    x = images("keras", (3, 9, 7, 3))
    options = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=0.5)
    extra = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=0.5)
    pairs = [(L.RandomRotation((0.1, 0.1), **options), spec_of("rotation", rotation=[0.1, 0.1], **extra)),
             (L.RandomZoom((0.2, 0.2), (-0.3, -0.3), **options),
              spec_of("zoom", zoom_height=[0.2, 0.2], zoom_width=[-0.3, -0.3], **extra)),
             (L.RandomZoom((-0.25, -0.25), **options),
              spec_of("zoom", zoom_height=[-0.25, -0.25], **extra)),
             (L.RandomTranslation((0.15, 0.15), (-0.2, -0.2), **options),
              spec_of("translation", translate_height=[0.15, 0.15],
                      translate_width=[-0.2, -0.2], **extra))]
    for layer, spec in pairs:
        expected = np.asarray(layer(x, training=True))
        assert np.abs(run(x, spec, 5) - expected).max() < 1e-4, type(layer).__name__
    for name in ("rotation", "zoom_both", "translation_far"):
        spec = dict(AFFINE_SPECS[name], **extra)
        matrices = ref.augment_parameters(spec, 17, 3, 9, 7)["matrices"]
        transform = np.concatenate([matrices, np.zeros((3, 2))], axis=1).astype(np.float32)
        expected = np.asarray(keras.ops.image.affine_transform(x, transform, **options))
        assert np.abs(run(x, spec, 17) - expected).max() < 1e-4, name


def test_keras_flip_contrast_crop(keras):
    L = keras.layers
    x = images("keras_other", (4, 9, 7, 3))
    flips = ref.augment_parameters(spec_of("flip"), 2, 4, 9, 7)["flips"]
    expected = L.RandomFlip().transform_images(x, {"flips": flips.reshape(4, 1, 1, 1)})
    np.testing.assert_array_equal(run(x, spec_of("flip"), 2), np.asarray(expected))
    spec = spec_of("contrast")
    factor = ref.augment_parameters(spec, 3, 4, 9, 7)["contrast"].astype(np.float32)
    layer = L.RandomContrast(0.5, value_range=spec["value_range"])
    expected = layer.transform_images(x, {"contrast_factor": factor.reshape(4, 1, 1, 1)})
    assert np.abs(run(x, spec, 3) - np.asarray(expected)).max() < 1e-5
    top, left, _, _ = ref.augment_crop_window(9, 7, 4, 5, 8, True)
    expected = L.RandomCrop(4, 5).transform_images(x, (top, left), training=True)
    np.testing.assert_array_equal(run(x, spec_of("crop"), 8), np.asarray(expected))
    smart_resize = keras.preprocessing.image.smart_resize
    for target in ((4, 5), (10, 12), (3, 7)):
        expected = np.asarray(smart_resize(x, target))
        got = run(x, spec_of("crop", crop=list(target)), 0, training=False)
        assert np.abs(got - expected).max() < 1e-5, target


# ---- bad arguments ------------------------------------------------------------------------

X = np.zeros((2, 5, 5, 3), np.float32)


BAD_SPECS = [
    ({"mode": "flip", "flip_horizontal": True}, r"'flip_vertical' is missing"),
    ({"mode": "flip", "flip_horizontal": 1, "flip_vertical": True},
     r"'flip_horizontal' must be a bool, got int"),
    ({"mode": "rotation", "rotation": 0.2}, r"'rotation' must be a pair \[lo, hi\], got float"),
    ({"mode": "rotation", "rotation": [0.1, 0.2, 0.3]}, r"'rotation' must be a pair .* 3 values"),
    ({"mode": "rotation", "rotation": ["a", 0.2]}, r"'rotation' must be a real number, got str"),
    ({"mode": "rotation", "rotation": [1.5, 2.0]}, r"'rotation' must overlap \[-1, 1\]"),
    ({"mode": "rotation", "rotation": [0, float("inf")]}, r"'rotation' must be finite"),
    ({"mode": "zoom", "zoom_height": [0, 1.5]}, r"'zoom_height' values must be in \(-1, 1\]"),
    ({"mode": "zoom", "zoom_height": [0, 0.5], "zoom_width": [-1.0, 0]},
     r"'zoom_width' values must be in \(-1, 1\]"),
    ({"mode": "zoom", "zoom_height": [0, 0.5], "zoom_width": 0.3},
     r"'zoom_width' must be a pair"),
    ({"mode": "translation", "translate_height": [0, 0.5]}, r"'translate_width' is missing"),
    ({"mode": "translation", "translate_height": [-1.5, 0], "translate_width": [0, 0]},
     r"'translate_height' values must be in \[-1, 1\]"),
    ({"mode": "crop"}, r"'crop' is missing"),
    ({"mode": "crop", "crop": [3]}, r"'crop' must be \[height, width\] with each >= 1"),
    ({"mode": "crop", "crop": "3x3"}, r"'crop' must be \[height, width\] \(two ints\), got str"),
    ({"mode": "crop", "crop": [2.5, 3]}, r"'crop' must be \[height, width\] \(two ints\)"),
    ({"mode": "contrast", "contrast": [-0.1, 0.5]}, r"'contrast' values must be in \[0, 1\]"),
    ({"mode": "contrast", "contrast": [0.1, 0.5], "value_range": [255, 0]},
     r"'value_range' must be ordered \[lo, hi\], got \[255, 0\]"),
    ({"mode": "rotation", "rotation": [0, 0.1], "fill_value": "zero"},
     r"'fill_value' must be a real number, got str"),
    ({"mode": "rotation", "rotation": [0, 0.1], "fill_mode": 3}, r"'fill_mode' must be a str"),
    ({"mode": 3}, r"'mode' must be a str, got int"),
]


@pytest.mark.parametrize("spec, message", BAD_SPECS,
                         ids=[f"{spec['mode']}-{i}" for i, (spec, _) in enumerate(BAD_SPECS)])
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        ops.augment(X, spec)
    with pytest.raises(ValueError, match="spec: " + message):
        _C.augment(X, spec, 0, True)


def test_bad_arguments():
    good = spec_of("flip")
    with pytest.raises(ValueError, match=r"x must be a 4-D array \(N, H, W, C\)"):
        ops.augment(np.zeros((5, 5), np.float32), good)
    with pytest.raises(ValueError, match=r"x must not be empty"):
        ops.augment(np.zeros((0, 5, 5, 3), np.float32), good)
    with pytest.raises(TypeError, match=r"x must be an array of real numbers"):
        ops.augment(np.array([["a"]]), good)
    with pytest.raises(TypeError, match=r"spec must be a dict"):
        ops.augment(X, "flip")
    with pytest.raises(TypeError, match=r"stream must be an int, got float"):
        ops.augment(X, good, stream=1.5)
    with pytest.raises(ValueError, match=r"stream must be in \[0, 18446744073709551615\]"):
        ops.augment(X, good, stream=2**64)
    with pytest.raises(TypeError, match=r"training must be a bool"):
        ops.augment(X, good, training=1)
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda'"):
        ops.augment(X, good, device="gpu")
    spec = dict(good)
    ops.augment(X, spec)
    assert spec == good  # the caller's dict is left alone
    # the largest stream and keys of other modes are accepted
    ops.augment(X, dict(good, rotation=[5, 6], crop=[0, 0]), stream=2**64 - 1)
