from __future__ import annotations

import pytest

from common.messages import (
    Invalid,
    clean_health_message,
    clean_srn,
    decode,
    fingerprint,
    request_id_from,
)
from common.models import RECORD, clean_record


def invalid_details(fields: dict[str, list[object]]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        clean_record(fields)
    assert caught.value.code == "invalid_record"
    return caught.value.details


def test_record_is_trimmed_and_srn_upper_cased() -> None:
    record = RECORD.clean({"Name": "  Asha Rao ", "SRN": " pes1ug21cs001", "Section": "A "})
    assert record == {"Name": "Asha Rao", "SRN": "PES1UG21CS001", "Section": "A"}


def test_lower_case_field_names_are_accepted() -> None:
    assert RECORD.clean({"name": "N", "srn": "s1", "section": "B"}) == {
        "Name": "N", "SRN": "S1", "Section": "B",
    }


def test_every_bad_field_is_named() -> None:
    details = invalid_details({
        "Name": [""], "SRN": ["has space"], "Section": ["x" * 17], "Nmae": ["typo"],
    })
    assert details == {
        "Name": "must not be empty",
        "SRN": "must be letters, digits, '-' or '_'",
        "Section": "must be at most 16 characters",
        "Nmae": "unknown field",
    }


def test_missing_wrong_type_and_repeated_fields() -> None:
    details = invalid_details({"Name": [42], "SRN": ["A1", "A2"]})
    assert details == {"Name": "must be text", "SRN": "given more than once", "Section": "required"}


def test_both_spellings_of_a_field_count_as_given_twice() -> None:
    assert invalid_details({"Name": ["a"], "name": ["b"], "SRN": ["S"], "Section": ["A"]}) == {
        "Name": "given more than once"
    }


def test_length_limits_are_inclusive() -> None:
    record = RECORD.clean({"Name": "n" * 100, "SRN": "s" * 32, "Section": "x" * 16})
    assert len(record["Name"]) == 100
    assert "Name" in invalid_details({"Name": ["n" * 101], "SRN": ["S"], "Section": ["A"]})
    assert "SRN" in invalid_details({"Name": ["n"], "SRN": ["s" * 33], "Section": ["A"]})


def test_unicode_names_are_kept() -> None:
    assert RECORD.clean({"Name": "Zoë Ñúñez 李", "SRN": "U1", "Section": "Ä"})["Name"] == "Zoë Ñúñez 李"


@pytest.mark.parametrize(("value", "code"), [
    (None, "invalid_parameter"), ("", "missing_parameter"), ("  ", "missing_parameter"),
    ("a b", "invalid_parameter"), ("x" * 33, "invalid_parameter"), ("1; DROP TABLE", "invalid_parameter"),
])
def test_bad_srn(value: object, code: str) -> None:
    with pytest.raises(Invalid) as caught:
        clean_srn(value)
    assert caught.value.code == code


def test_health_message_limits() -> None:
    assert clean_health_message("x" * 256) == "x" * 256
    cases = ((None, "missing_parameter"), ("", "missing_parameter"), ("x" * 257, "invalid_parameter"))
    for value, code in cases:
        with pytest.raises(Invalid) as caught:
            clean_health_message(value)
        assert caught.value.code == code


def test_request_id_is_kept_only_when_well_formed() -> None:
    assert request_id_from("abc-123_X.9") == "abc-123_X.9"
    for bad in (None, "", "has space", "new\nline", "x" * 65, "ünï"):
        generated = request_id_from(bad)
        assert generated != bad and len(generated) == 32


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"])
def test_decode_rejects_anything_but_a_json_object(body: bytes) -> None:
    with pytest.raises(Invalid) as caught:
        decode(body)
    assert caught.value.code == "invalid_message"


def test_fingerprint_ignores_send_time_but_not_content() -> None:
    base = fingerprint("insert_record", {"SRN": "A", "Name": "n", "Section": "s"})
    assert base == fingerprint("insert_record", {"Section": "s", "Name": "n", "SRN": "A", "sent_at": 1.0})
    assert base != fingerprint("insert_record", {"SRN": "A", "Name": "other", "Section": "s"})
    assert base != fingerprint("delete_record", {"SRN": "A", "Name": "n", "Section": "s"})
