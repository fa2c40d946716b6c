from ofa.imagenet_classification.networks import MobileNetV3

from medkd_bench.registry import load_registry
from medkd_bench_plugins.students import ofa_595


def test_ofa_595_has_the_published_size_with_three_classes():
    spec = load_registry().students["ofa-595"]
    model = spec.build(3, 64)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - 7.60) < 0.01, params


def _without_none(value):
    """The subnet's config spells unset options as None where the supernet omits them."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def test_ofa_595_is_the_supernets_active_subnet():
    model = ofa_595.build_ofa_595(3, 64)
    assert type(model) is MobileNetV3  # what get_active_subnet() returns, not a hand-written copy
    supernet = ofa_595.build_supernet(3)
    supernet.set_active_subnet(ks=ofa_595.KERNEL_SIZES, e=ofa_595.EXPAND_RATIOS, d=ofa_595.DEPTHS)
    assert _without_none(model.config) == _without_none(supernet.get_active_net_config())
    # depth 3 in the first stage skips the fourth block's settings
    assert len(model.blocks) == 1 + sum(ofa_595.DEPTHS)
    first_stage = [b.conv.depth_conv.conv.kernel_size[0] for b in model.blocks[1:4]]
    assert first_stage == ofa_595.KERNEL_SIZES[:3]
