"""The query string's checks as pure functions (the HTTP round trips are in tests/stack)."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from sluice_common.errors import ApiError
from sluice_common.web.params import parse_params


def test_many_unknown_parameters_name_five_and_count_the_rest():
    names = [f"extra{i:02d}" for i in range(12)]
    with pytest.raises(ApiError) as raised:
        parse_params(MultiDict({"phase": "dev", **{name: "1" for name in names}}), "model")
    message = raised.value.message
    assert raised.value.code == "unknown_parameter"
    assert "'extra00'" in message and "'extra04'" in message and "'extra05'" not in message
    assert "and 7 more" in message


def test_up_to_five_unknown_parameters_are_all_named_with_no_count():
    with pytest.raises(ApiError) as raised:
        parse_params(MultiDict({"phase": "dev", "targte": "y", "modle": "m"}), "model")
    assert "'modle', 'targte';" in raised.value.message
    assert "more" not in raised.value.message.split(";")[0]
