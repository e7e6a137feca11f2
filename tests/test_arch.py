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


def test_summary_counts_the_seed_s_networks():
    from jaxmlp import summary

    # Preset c by hand (issue 26: summed by hand before): 784·70+70 + 70·70+70 + 70·10+10.
    c = summary("c")
    assert c.params == 784 * 70 + 70 + 70 * 70 + 70 + 70 * 10 + 10 == 60_630
    assert c.multiply_adds == 784 * 70 + 70 * 70 + 70 * 10
    assert [r[3] for r in c.rows] == [(784, 70), (70, 70), (70, 10)]
    assert [r[4] for r in c.rows] == [54_950, 4_970, 710]
    assert summary("a").params == 7_850 and summary("b", 784).params == 42_310
    # Any input width (a dataset's in_dim), and any spelling parse_arch reads.
    assert summary([(3, "tanh"), (2, "linear")], in_dim=4).params == 4 * 3 + 3 + 3 * 2 + 2
    assert summary(parse_arch("b")) == summary("50:relu,50:relu,10:linear")
    text = str(c).splitlines()
    assert text[0] == "input: 784 values an example" and "784×70" in text[2]
    assert "54,950" in text[2] and text[-1].startswith("total: 60,630 parameters, 60,480")
    assert c.line() == ("784 → 70 relu → 70 relu → 10 relu: 60,630 parameters, "
                        "60,480 multiply-adds an example")


@pytest.mark.parametrize("args, error, message", [
    (("b", 0), ValueError, "in_dim must be an int >= 1, got 0"),
    (("b", 7.0), TypeError, "in_dim must be an int, got 7.0"),
    (("b", 2 ** 31), ValueError, "in_dim must be an int below 2\\*\\*31"),
    (("50:swish",), ValueError, "unknown activation 'swish'"),
])
def test_summary_refuses_what_no_network_has(args, error, message):
    from jaxmlp import summary

    with pytest.raises(error, match=message):
        summary(*args)
