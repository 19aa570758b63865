"""The payload models: one scheme of validation, and the JSON Schemas the documents are made of."""

from __future__ import annotations

from typing import Any

import pytest

from common.messages import Invalid
from common.models import ITEM, RECORD, UPDATE, Model

pytestmark = pytest.mark.unit


def details(model: Model, body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        model.clean(body)
    assert caught.value.code == model.code
    return caught.value.details


def test_both_spellings_of_one_field_are_one_field_given_twice() -> None:
    assert details(RECORD, {"SRN": "A", "srn": "B", "Name": "N", "Section": "S"}) == {
        "SRN": "given more than once"}
    assert RECORD.clean_fields({"name": ["N"], "SRN": [" s1 "], "section": ["S"]}) == {
        "Name": "N", "SRN": "S1", "Section": "S"}


def test_an_update_needs_something_to_change_and_leaves_out_what_it_does_not() -> None:
    assert UPDATE.clean({"SRN": "s1", "Section": " B "}) == {"SRN": "S1", "Section": "B"}
    assert details(UPDATE, {"SRN": "s1"}) == {"Name": "give Name, Section or both",
                                              "Section": "give Name, Section or both"}


def test_a_default_fills_in_and_is_in_the_schema_a_client_reads() -> None:
    assert ITEM.clean({"SKU": "a", "Name": "B"})["Quantity"] == 0
    assert ITEM.sent_schema()["properties"]["Quantity"]["default"] == 0
    assert ITEM.sent_schema()["required"] == ["SKU", "Name"]
    assert ITEM.cleaned_schema()["required"] == ["SKU", "Name", "Quantity"]  # on the bus, always


def test_the_record_schemas_say_what_the_rules_check() -> None:
    sent = RECORD.sent_schema()
    assert sent["additionalProperties"] is False and sent["required"] == ["Name", "SRN", "Section"]
    assert sent["properties"]["Name"] == {"type": "string", "minLength": 1, "maxLength": 100}
    assert sent["properties"]["SRN"]["pattern"] == r"^\s*[A-Za-z0-9_-]{1,32}\s*$"  # as sent: trimmed later
    assert RECORD.cleaned_schema()["properties"]["SRN"] == {"type": "string", "pattern": "^[A-Z0-9_-]{1,32}$"}
    update = UPDATE.cleaned_schema()
    assert (update["required"], update["minProperties"]) == (["SRN"], 2)
