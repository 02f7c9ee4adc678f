"""The ids ``read_page`` makes from stored text are the ``UUID`` the library would make."""

from __future__ import annotations

import pickle
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.log_pages import _uuid


@given(st.uuids())
def test_a_stored_id_in_either_form_reads_as_the_same_uuid(expected: uuid.UUID) -> None:
    for text in (expected.hex, str(expected)):  # the library stores .hex
        made = _uuid({}, text)
        assert made == expected and hash(made) == hash(expected)
        assert str(made) == str(expected) and made.hex == expected.hex
        assert pickle.loads(pickle.dumps(made)) == expected


@pytest.mark.parametrize("text", ["", "not-a-uuid", "g" * 32, "0" * 31, "{" + "0" * 32 + "}"])
def test_a_malformed_stored_id_fails_as_uuid_fails(text: str) -> None:
    try:
        expected = uuid.UUID(text)
    except ValueError:
        with pytest.raises(ValueError):
            _uuid({}, text)
    else:
        assert _uuid({}, text) == expected
