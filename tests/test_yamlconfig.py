"""YAML + ``--set`` into dataclasses: every supported field type, good and bad values, and errors that
name the file, the line and the field (or the ``--set`` that caused them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from mrmkg.errors import InputError
from mrmkg.yamlconfig import Source, apply_overrides, field_help, from_dict, load_yaml, parse_override, to_dict


@dataclass
class Inner:
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclass
class Outer:
    name: str = "run"
    steps: int = 10
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    either: int | str = 0
    tags: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError("steps must be >= 0")


@pytest.mark.parametrize("data,expected", [
    ({"steps": 3.0}, {"steps": 3}),                      # an integral float is an integer
    ({"name": 7}, {"name": "7"}),                        # numbers are accepted as strings
    ({"inner": {"lr": "1e-4"}}, {"inner.lr": 1e-4}),     # YAML reads 1e-4 without a dot as a string
    ({"inner": {"lr": 2}}, {"inner.lr": 2.0}),
    ({"limit": None}, {"limit": None}),
    ({"limit": 5}, {"limit": 5}),
    ({"either": "x"}, {"either": "x"}),
    ({"inner": {"betas": [0.5, 0.6]}}, {"inner.betas": (0.5, 0.6)}),
    ({"tags": ["x", 1]}, {"tags": ["x", "1"]}),
    ({"extra": {"k": [1]}}, {"extra": {"k": [1]}}),
    ({"mode": "b", "flag": True}, {"mode": "b", "flag": True}),
])
def test_values_are_coerced_to_the_field_type(data, expected):
    cfg = from_dict(Outer, data)
    for dotted, want in expected.items():
        got = cfg
        for part in dotted.split("."):
            got = getattr(got, part)
        assert got == want and type(got) is type(want)


@pytest.mark.parametrize("data,field_name,needle", [
    ({"steps": 1.5}, "steps", "expected an integer"),
    ({"steps": True}, "steps", "expected an integer"),       # a bool is not an integer here
    ({"flag": "yes"}, "flag", "expected true or false"),
    ({"mode": "c"}, "mode", "'a', 'b'"),
    ({"limit": "many"}, "limit", "expected int or None"),
    ({"either": [1]}, "either", "expected int or str"),
    ({"tags": "x"}, "tags", "expected a list"),              # a string is not a list of strings
    ({"tags": [[1]]}, "tags[0]", "expected a string"),
    ({"extra": [1]}, "extra", "expected a mapping"),
    ({"inner": 3}, "inner", "expected a section"),
    ({"inner": {"lr": "fast"}}, "inner.lr", "expected a float"),
    ({"inner": {"momentum": 0.9}}, "inner.momentum", "unknown field; Inner has: betas, lr"),
])
def test_bad_values_name_the_dotted_field(data, field_name, needle):
    with pytest.raises(InputError) as e:
        from_dict(Outer, data)
    assert f"field '{field_name}'" in str(e.value) and needle in str(e.value)


def test_post_init_errors_become_input_errors_with_the_file():
    with pytest.raises(InputError, match="steps must be >= 0") as e:
        from_dict(Outer, {"steps": -1}, Source("cfg.yaml"))
    assert e.value.path == "cfg.yaml"


def test_file_errors_carry_the_line_of_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ninner:\n  betas: [0.9]\n  lr: fast\n")
    data, src = load_yaml(p)
    with pytest.raises(InputError) as e:
        from_dict(Outer, data, src)
    assert (e.value.path, e.value.line) == (str(p), 4) and "inner.lr" in str(e.value)


@pytest.mark.parametrize("text,line,needle", [
    ("a: [1, 2\n", 2, "not valid YAML"),
    ("- 1\n- 2\n", None, "expected a mapping of config fields at the top level, got list"),
])
def test_unreadable_files_name_the_file(tmp_path, text, line, needle):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_yaml(p)
    assert e.value.path == str(p) and e.value.line == line and needle in str(e.value)


def test_empty_file_is_the_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# nothing set\n")
    data, src = load_yaml(p)
    assert from_dict(Outer, data, src) == Outer()


def test_overrides_parse_yaml_values_and_report_themselves():
    assert parse_override("inner.lr=1e-4") == ("inner.lr", "1e-4")
    assert parse_override("tags=[a, b]") == ("tags", ["a", "b"])
    assert parse_override("name=") == ("name", "")
    assert parse_override("name=[unclosed") == ("name", "[unclosed")  # not YAML: kept as the raw string
    src = Source("cfg.yaml", {"steps": 2})
    data = apply_overrides({"steps": 1}, ["steps=lots", "inner.lr=0.5"], src)
    assert data == {"steps": "lots", "inner": {"lr": 0.5}}
    with pytest.raises(InputError) as e:
        from_dict(Outer, data, src)
    # the value came from the command line, so the error names the --set, not the file's line 2
    assert str(e.value).startswith("--set steps: expected an integer") and e.value.line is None


@pytest.mark.parametrize("override,needle", [
    ("steps", "expected KEY=VALUE"),
    ("=3", "empty field name"),
    ("inner..lr=3", "empty field name"),
    ("name.sub=3", "'name' is not a section"),
])
def test_bad_overrides_are_refused(override, needle):
    with pytest.raises(InputError, match=needle):
        apply_overrides({"name": "x"}, [override])


def test_to_dict_round_trips_and_help_lists_nested_fields():
    cfg = from_dict(Outer, {"tags": ["t"], "inner": {"betas": [0.1, 0.2]}, "limit": 3})
    plain = to_dict(cfg)
    assert plain["inner"]["betas"] == [0.1, 0.2]  # tuples become lists for YAML/JSON
    assert from_dict(Outer, plain) == cfg
    helps = {name: (text, default) for name, text, default in field_help(Outer)}
    assert helps["inner.lr"] == ("learning rate", 1e-3) and helps["tags"] == ("", [])
    assert "inner" not in helps


# ---------------------------------------------------------------------------------- numbers
@dataclass
class Numbers:
    lr: float = field(default=1e-3, metadata={"ge": 0})
    ratio: float = field(default=0.5, metadata={"gt": 0, "le": 1})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={"ge": 0, "lt": 1})
    pair: tuple[int, str] = (1, "a")
    steps: int = field(default=1, metadata={"ge": 1})
    limit: int | None = field(default=None, metadata={"ge": 0})
    scale: float = 1.0
    loose: float = field(default=0.0, metadata={"allow_nonfinite": True})
    maybe: float | None = None


@pytest.mark.parametrize("data,field_name,needle", [
    ({"scale": float("nan")}, "scale", "expected a finite number, got nan"),   # YAML .nan
    ({"scale": float("-inf")}, "scale", "expected a finite number, got -inf"),
    ({"scale": "inf"}, "scale", "expected a finite number, got 'inf'"),         # a string float() would accept
    ({"scale": "1e999"}, "scale", "expected a finite number"),                  # overflows to inf
    ({"betas": [0.9, float("nan")]}, "betas[1]", "expected a finite number"),
    ({"maybe": float("nan")}, "maybe", "expected a finite number"),
    ({"lr": -0.5}, "lr", "must be >= 0, got -0.5"),
    ({"ratio": 0}, "ratio", "must be > 0, got 0.0"),
    ({"ratio": 1.5}, "ratio", "must be <= 1, got 1.5"),
    ({"betas": [0.9, 1.0]}, "betas[1]", "must be < 1, got 1.0"),               # bounds hold for every item
    ({"betas": [0.9]}, "betas", "expected a list of 2 values, got 1"),
    ({"betas": [0.9, 0.99, 0.999]}, "betas", "expected a list of 2 values, got 3"),
    ({"pair": [1, 2, 3]}, "pair", "expected a list of 2 values"),
    ({"pair": ["x", "y"]}, "pair[0]", "expected an integer"),                 # each position has its own type
    ({"steps": 0}, "steps", "must be >= 1, got 0"),
    ({"limit": -1}, "limit", "must be >= 0, got -1"),                          # X | None: X's own bound
    ({"limit": "x"}, "limit", "expected int or None"),
])
def test_numbers_are_checked_when_read(data, field_name, needle):
    with pytest.raises(InputError) as e:
        from_dict(Numbers, data)
    assert f"field '{field_name}'" in str(e.value) and needle in str(e.value)


def test_numbers_within_their_bounds_pass():
    cfg = from_dict(Numbers, {"lr": 0, "ratio": 1, "betas": [0, 0.5], "pair": [2, 3], "steps": 1, "limit": None,
                              "scale": -2.5, "loose": float("inf")})
    assert (cfg.lr, cfg.ratio, cfg.betas, cfg.pair, cfg.scale, cfg.loose) == (0.0, 1.0, (0.0, 0.5), (2, "3"), -2.5,
                                                                              float("inf"))
    assert from_dict(Numbers, {"limit": 0}).limit == 0


def test_an_item_error_names_the_line_of_the_item(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("betas:\n  - 0.9\n  - 1.5\n")
    data, src = load_yaml(p)
    with pytest.raises(InputError) as e:
        from_dict(Numbers, data, src)
    assert (e.value.path, e.value.line) == (str(p), 3) and "field 'betas[1]'" in str(e.value)


def test_an_error_in_a_section_set_on_the_command_line_names_the_set():
    src = Source("cfg.yaml", {"inner.lr": 3})
    data = apply_overrides({"inner": {"lr": 0.1}}, ["inner={lr: fast}"], src)
    with pytest.raises(InputError) as e:
        from_dict(Outer, data, src)
    assert str(e.value).startswith("--set inner.lr: expected a float")


def test_a_section_post_init_error_names_the_section_and_its_line(tmp_path):
    @dataclass
    class Top:
        outer: Outer = field(default_factory=Outer)

    p = tmp_path / "c.yaml"
    p.write_text("# a section\nouter:\n  steps: -1\n")
    data, src = load_yaml(p)
    with pytest.raises(InputError, match="steps must be >= 0") as e:
        from_dict(Top, data, src)
    assert (e.value.path, e.value.line) == (str(p), 2) and "field 'outer'" in str(e.value)
