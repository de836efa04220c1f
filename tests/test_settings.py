"""Typed settings: parsing checks every field, round-trips, and refuses nonsense."""

import dataclasses

import ml_collections
import pytest

from repro_jax import settings


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner:
  rate: float = 1e-3
  steps: int = 10
  sizes: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outer:
  name: str = "a"
  flag: bool = False
  path: str | None = None
  pairs: tuple[tuple[str, int], ...] = (("x", 1),)
  inner: Inner = dataclasses.field(default_factory=Inner)


def test_parse_round_trips_through_json_and_configdict():
  s = settings.parse(Outer, {"inner": {"sizes": [3, 4], "rate": 1}, "pairs": [["y", 2]]})
  assert s.inner.sizes == (3, 4) and s.inner.rate == 1.0 and isinstance(s.inner.rate, float)
  assert s.pairs == (("y", 2),) and s.path is None
  assert settings.parse(Outer, settings.to_dict(s)) == s
  assert settings.parse(Outer, settings.to_config(s)) == s
  assert isinstance(settings.to_config(s), ml_collections.ConfigDict)
  assert settings.override(s, {"inner": {"steps": 3}}).inner.steps == 3
  assert settings.digest(s) == settings.digest(settings.parse(Outer, settings.to_dict(s)))
  assert settings.digest(s) != settings.digest(settings.override(s, {"flag": True}))


@pytest.mark.parametrize("mapping, message", [
    ({"nope": 1}, "unknown field(s) config.nope"),
    ({"inner": {"stpes": 1}}, "config.inner.stpes"),
    ({"inner": {"steps": 2.5}}, "config.inner.steps must be an integer"),
    ({"inner": {"steps": True}}, "config.inner.steps must be an integer"),
    ({"flag": 1}, "config.flag must be True or False"),
    ({"name": 3}, "config.name must be a string"),
    ({"inner": {"rate": "fast"}}, "config.inner.rate must be a number"),
    ({"inner": {"sizes": "12"}}, "config.inner.sizes must be a tuple"),
    ({"pairs": [["y"]]}, "config.pairs[0] must have 2 entries"),
    ({"inner": 3}, "config.inner must be a mapping"),
])
def test_parse_rejects_with_the_dotted_field(mapping, message):
  with pytest.raises(ValueError) as e:
    settings.parse(Outer, mapping)
  assert message in str(e.value)


def test_settings_are_frozen():
  s = settings.parse(Outer, {})
  with pytest.raises(dataclasses.FrozenInstanceError):
    s.name = "b"
