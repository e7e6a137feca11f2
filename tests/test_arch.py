import pytest

from jaxmlp import PRESETS, Layer, parse_arch


def test_presets_are_the_seeds_networks():
    assert parse_arch("a") == (Layer(10, "linear"),)
    assert parse_arch("b") == ((50, "relu"), (50, "relu"), (10, "linear"))
    assert parse_arch("c") == ((70, "relu"), (70, "relu"), (10, "relu"))
    assert parse_arch("wide") == ((1024, "relu"), (1024, "relu"), (10, "linear"))
    assert parse_arch(PRESETS["b"]) == parse_arch("b")


def test_parse_spec_and_sequences():
    arch = parse_arch(" 50:relu, 7:tanh ,3:sigmoid")
    assert arch == (Layer(50, "relu"), Layer(7, "tanh"), Layer(3, "sigmoid"))
    assert parse_arch([(50, "relu"), [7, "tanh"], (3, "sigmoid")]) == arch
    assert parse_arch(arch) == arch and hash(arch) == hash(parse_arch(arch))


@pytest.mark.parametrize("spec, error, message", [
    ("50:swish", ValueError, "unknown activation 'swish'"),
    ("0:relu", ValueError, "layer width must be positive, got 0"),
    ("-3:relu", ValueError, "layer width must be positive, got -3"),
    ("50relu", ValueError, "bad layer '50relu'"),
    ("x:relu", ValueError, "bad width 'x'"),
    ("z", ValueError, "bad layer 'z'"),
    ([], ValueError, "no layers"),
    ([(2.5, "relu")], TypeError, "layer width must be an int"),
    ([(3, "relu", 1)], TypeError, r"\(units, activation\) pair"),
    (42, TypeError, "got int"),
])
def test_bad_specs(spec, error, message):
    with pytest.raises(error, match=message):
        parse_arch(spec)
