"""Remap rules, plan() and its report: every problem found at once, strict by default, inverses exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slidescope.merge import Checkpoint, RemapError, TensorInfo
from slidescope.merge.remap import (
    OIHW_TO_HWIO,
    Remap,
    add_scope,
    drop_training_state,
    parse_rule,
    port,
    prefer_ema,
    strip_module,
    unwrap,
)
from slidescope.merge.report import apply_plan, plan
from slidescope.wsi.errors import ParameterError

RNG = np.random.default_rng(3)


def torch_layer(name: str, kind: str, channels: int = 4) -> dict[str, np.ndarray]:
    """A torch layer's tensors: ``conv`` (weight and bias), ``bn`` (BatchNorm) or ``fc`` (dense)."""
    if kind == "conv":
        return {f"{name}.weight": RNG.normal(size=(channels, 3, 3, 3)).astype(np.float32),
                f"{name}.bias": RNG.normal(size=channels).astype(np.float32)}
    if kind == "bn":
        return {f"{name}.{part}": RNG.normal(size=channels).astype(np.float32)
                for part in ("weight", "bias", "running_mean", "running_var")}
    return {f"{name}.weight": RNG.normal(size=(2, channels)).astype(np.float32),
            f"{name}.bias": RNG.normal(size=2).astype(np.float32)}


def small_torch() -> dict[str, np.ndarray]:
    return {**torch_layer("conv1", "conv"), **torch_layer("bn1", "bn"), **torch_layer("fc", "fc"),
            "bn1.num_batches_tracked": np.array(5, np.int64)}


def infos_of(arrays: dict[str, np.ndarray]) -> list[TensorInfo]:
    return list(Checkpoint.from_arrays(arrays).infos)


def target_like(arrays: dict[str, np.ndarray], remap: Remap) -> list[TensorInfo]:
    """The infos a graph would have: what ``remap`` makes of ``arrays`` (transforms applied to shapes)."""
    out = []
    for mapped, info in zip(remap.map(infos_of(arrays)), infos_of(arrays)):
        if mapped.target is not None:
            shape = info.shape
            for transform in mapped.transforms:
                shape = transform.shape(shape)
            out.append(TensorInfo(mapped.target, shape, info.dtype, info.kind))
    return out


FIXED = small_torch()


def test_port_torch_to_tf_names_and_layouts():
    source = Checkpoint.from_arrays(FIXED, framework="torch")
    remap = drop_training_state() + port("torch", "tf") + add_scope("tissue")
    names = {m.source: m.target for m in remap.map(source.infos)}
    assert names == {"conv1.weight": "tissue/conv1/kernel", "conv1.bias": "tissue/conv1/bias",
                     "bn1.weight": "tissue/bn1/gamma", "bn1.bias": "tissue/bn1/beta",
                     "bn1.running_mean": "tissue/bn1/moving_mean", "bn1.running_var": "tissue/bn1/moving_variance",
                     "fc.weight": "tissue/fc/kernel", "fc.bias": "tissue/fc/bias", "bn1.num_batches_tracked": None}
    target = target_like(FIXED, remap)
    mapping, report = plan(source, remap, target)
    assert report.ok and len(report.mapped) == 8 and report.ignored[0]["reason"] == "kind counter"
    arrays = dict(apply_plan(source, mapping, target))
    np.testing.assert_array_equal(arrays["tissue/conv1/kernel"], OIHW_TO_HWIO.apply(FIXED["conv1.weight"]))
    np.testing.assert_array_equal(arrays["tissue/conv1/kernel"], FIXED["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(arrays["tissue/fc/kernel"], FIXED["fc.weight"].T)
    np.testing.assert_array_equal(arrays["tissue/bn1/beta"], FIXED["bn1.bias"])


def test_report_finds_every_problem_at_once():
    arrays = small_torch()
    remap = drop_training_state() + port("torch", "tf")
    target = target_like(arrays, remap)
    broken = dict(arrays)
    del broken["bn1.running_var"]                                            # dropped -> missing
    broken["head.weight"] = broken.pop("fc.weight")                          # renamed -> unexpected + missing
    broken["conv1.bias"] = np.zeros(7, np.float32)                           # wrong shape -> mismatch
    broken["module.bn1.running_mean"] = broken["bn1.running_mean"]           # two sources, one name
    remap = strip_module() + remap  # torch names are cleaned before they are ported
    with pytest.raises(RemapError) as raised:
        plan(Checkpoint.from_arrays(broken), remap, target)
    report = raised.value.report
    assert report.missing == ["bn1/moving_variance", "fc/kernel"]  # a collided name is a collision, not missing
    assert report.unexpected == ["head/kernel"]
    assert [m["target"] for m in report.shape_mismatches] == ["conv1/bias"]
    assert report.shape_mismatches[0]["expected"] == [4] and report.shape_mismatches[0]["got"] == [7]
    assert report.collisions == [{"target": "bn1/moving_mean", "sources": ["bn1.running_mean", "module.bn1.running_mean"]}]
    assert report.problem_count == 5
    message = str(raised.value)
    for text in ("missing: fc/kernel", "unexpected: head/kernel", "shape mismatch: conv1.bias", "collision:"):
        assert text in message
    json.dumps(report.to_dict())
    table = report.to_text()
    assert "MISSING" in table and "COLLISION" in table and "UNEXPECTED" in table and "SHAPE" in table


def test_lenient_and_allow_patterns():
    arrays = small_torch()
    remap = drop_training_state() + port("torch", "tf")
    target = target_like(arrays, remap) + [TensorInfo("extra/kernel", (1, 1), "float32", "weight")]
    with pytest.raises(RemapError):
        plan(Checkpoint.from_arrays(arrays), remap, target)
    _, report = plan(Checkpoint.from_arrays(arrays), remap, target, allow_missing=[r"^extra/"])
    assert report.ok and report.allowed_missing == ["extra/kernel"]
    _, report = plan(Checkpoint.from_arrays(arrays), remap, target, strict=False)
    assert not report.ok and report.missing == ["extra/kernel"]


def test_dtype_casts_reported_and_kind_changes_refused():
    arrays = {"a.weight": np.ones((2, 2), np.float64), "b.weight": np.ones((2, 2), np.int32)}
    target = [TensorInfo("a.weight", (2, 2), "float32", "weight"), TensorInfo("b.weight", (2, 2), "float32", "weight")]
    with pytest.raises(RemapError) as raised:
        plan(Checkpoint.from_arrays(arrays), Remap(), target)
    report = raised.value.report
    assert report.dtype_casts == [{"source": "a.weight", "target": "a.weight", "from": "float64", "to": "float32"}]
    assert report.dtype_mismatches[0]["source"] == "b.weight"
    mapping, _ = plan(Checkpoint.from_arrays(arrays), Remap(), target[:1], allow_unexpected=["^b"])
    assert dict(apply_plan(Checkpoint.from_arrays(arrays), mapping, target[:1]))["a.weight"].dtype == np.float32


def test_unwrap_strip_module_and_ema():
    weights = torch_layer("fc", "fc")
    nested = {**{f"state_dict.module.{k}": v for k, v in weights.items()},
              **{f"state_dict.module.ema.{k}": v + 1 for k, v in weights.items()},
              "optimizer.state.0.exp_avg": np.zeros(2, np.float32), "epoch_tensor": np.array(3)}
    source = Checkpoint.from_arrays(nested)
    target = infos_of(weights)
    with pytest.raises(RemapError) as raised:  # without prefer_ema the shadow and the weight collide
        plan(source, unwrap("state_dict") + strip_module() + Remap((parse_rule(r"^ema\.=>"),)), target)
    assert len(raised.value.report.collisions) == 2
    mapping, report = plan(source, unwrap("state_dict") + strip_module() + prefer_ema(), target)
    arrays = dict(apply_plan(source, mapping, target))
    np.testing.assert_array_equal(arrays["fc.weight"], weights["fc.weight"] + 1)  # the EMA shadow won
    reasons = {i["source"]: i["reason"] for i in report.ignored}
    assert reasons["state_dict.module.fc.weight"] == "EMA shadow state_dict.module.ema.fc.weight preferred"
    assert reasons["optimizer.state.0.exp_avg"].startswith("ignore") and reasons["epoch_tensor"].startswith("ignore")


def test_parse_rule():
    rule = parse_rule(r"^conv(\d)/=>tissue/conv\1/")
    assert rule.apply("conv1/kernel", TensorInfo("conv1/kernel", (1,), "float32", "weight"))[0] == "tissue/conv1/kernel"
    for bad in ("no arrow", "=>x", "[=>x"):
        with pytest.raises(ParameterError):
            parse_rule(bad)
    with pytest.raises(ParameterError, match="no inverse"):
        Remap((parse_rule("a=>b"),)).inverse()


def test_ignore_kinds_are_checked():
    with pytest.raises(ParameterError, match="ignore_kinds"):
        Remap(ignore_kinds=("slots",))


# -- remap then inverse is the identity -------------------------------------------------------------

_part = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda s: not s.startswith(("bn", "norm")))
_layers = st.lists(st.tuples(st.lists(_part, min_size=1, max_size=3).map(".".join), st.sampled_from(["conv", "bn", "fc"]),
                             st.integers(1, 5)), min_size=1, max_size=6, unique_by=lambda t: t[0])


@settings(max_examples=60, deadline=None)
@given(layers=_layers, scope=_part, to_tf=st.booleans())
def test_remap_then_inverse_is_identity(layers, scope, to_tf):
    arrays: dict[str, np.ndarray] = {}
    for name, kind, channels in layers:
        arrays.update(torch_layer(name, kind, channels))
    if not to_tf:  # start from TensorFlow names: port the torch arrays over first
        there = port("torch", "tf")
        source = Checkpoint.from_arrays(arrays)
        arrays = dict(apply_plan(source, plan(source, there, target_like(arrays, there))[0], target_like(arrays, there)))
    framework = "torch" if to_tf else "tf"
    remap = add_scope(scope, framework) + port(framework, "tf" if to_tf else "torch")
    source = Checkpoint.from_arrays(arrays)
    forward_target = target_like(arrays, remap)
    moved = dict(apply_plan(source, plan(source, remap, forward_target)[0], forward_target))
    back = remap.inverse()
    moved_checkpoint = Checkpoint.from_arrays(moved)
    mapping, report = plan(moved_checkpoint, back, infos_of(arrays))
    assert report.ok
    restored = dict(apply_plan(moved_checkpoint, mapping, infos_of(arrays)))
    assert list(restored) == list(arrays)
    for name in arrays:
        np.testing.assert_array_equal(restored[name], arrays[name])
