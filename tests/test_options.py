"""Per-detector options: typed, bounded, unknown keys refused."""

from __future__ import annotations

from typing import Any

import pytest

from mlapi.detectors.blazeface import BlazeFaceOptions
from mlapi.detectors.nanodet import NanoDetOptions
from mlapi.errors import OptionError


def test_strings_are_coerced_to_the_declared_types() -> None:
    opts = NanoDetOptions.parse({"confidence": "0.6", "max_count": "5", "labels": "person, dog"})
    assert opts == NanoDetOptions(confidence=0.6, iou=0.5, labels=("person", "dog"), max_count=5)


def test_defaults_without_options() -> None:
    assert BlazeFaceOptions.parse(None) == BlazeFaceOptions(confidence=0.5)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"confidance": "0.5"}, "unknown option confidance"),
        ({"confidence": "high"}, "must be a number"),
        ({"confidence": "1.5"}, "between 0.0 and 1.0"),
        ({"confidence": "nan"}, "must be a number"),
        ({"max_count": "2.5"}, "must be a whole number"),
        ({"labels": "person,unicorn"}, "not in COCO: unicorn"),
    ],
)
def test_bad_options_are_refused_with_the_reason(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        NanoDetOptions.parse(raw, "objects")
