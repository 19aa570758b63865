"""The request ledger forgets: a deleted student's data leaves its stored answers at once,
and every answer leaves after LEDGER_RETENTION_H (consumer_three prunes it in batches)."""

from __future__ import annotations

import json
from collections.abc import Callable

import requests

from common.consumer import LEDGER_PRUNE_BATCH
from tests.support import SystemCopy, json_of, status_path, unique_srn, wait_until

Api = Callable[..., requests.Response]
# The test copy's consumer_three looks for expired entries every LEDGER_PRUNE_INTERVAL_S (2 s).
PRUNED_WITHIN_S = 30


def stored_replies(stack: SystemCopy, request_ids: list[str]) -> dict[str, str]:
    names = ", ".join(f"'{request_id}'" for request_id in request_ids)
    return dict(stack.sql(f"SELECT request_id, reply FROM requests WHERE request_id IN ({names})"))


def test_a_delete_erases_the_student_s_data_from_every_answer_the_ledger_kept(stack: SystemCopy,
                                                                              api: Api) -> None:
    srn, tag = unique_srn("E"), unique_srn()
    record = {"Name": "Erasable Person", "SRN": srn, "Section": "A"}
    ids = {step: f"{step}-{tag}" for step in ("insert", "update", "again", "delete")}
    inserted = api("POST", "/insert_record", json=record, headers={"X-Request-ID": ids["insert"]})
    assert inserted.status_code == 201
    changed = {"SRN": srn, "Name": "Erasable Renamed"}
    updated = api("POST", "/update_record", json=changed, headers={"X-Request-ID": ids["update"]})
    assert updated.status_code == 200
    refused = api("POST", "/insert_record", json=record, headers={"X-Request-ID": ids["again"]})
    assert refused.status_code == 409 and json_of(refused)["error"] == "duplicate_srn"
    before = stored_replies(stack, [ids["insert"], ids["update"]])
    assert "Erasable Person" in before[ids["insert"]] and "Erasable Renamed" in before[ids["update"]]

    deleted = api("GET", "/delete_record", params={"SRN": srn}, headers={"X-Request-ID": ids["delete"]})
    assert deleted.status_code == 200 and json_of(deleted)["deleted"]["Name"] == "Erasable Renamed"

    # Every earlier answer keeps its status and error code, not the data.
    after = stored_replies(stack, list(ids.values()))
    for step in ("insert", "update", "again"):
        assert "Erasable" not in after[ids[step]] and srn not in after[ids[step]], step
    assert [row[0] for row in stack.sql(
        f"SELECT COUNT(*) FROM requests WHERE subject = '{srn}'")] == ["1"]  # the delete's own
    lookup = api("GET", status_path(ids["insert"], "insert_record", record))
    assert lookup.status_code == 201 and json_of(lookup)["erased"] is True
    retried = api("POST", "/insert_record", json=record, headers={"X-Request-ID": ids["again"]})
    assert retried.status_code == 409 and json_of(retried)["error"] == "duplicate_srn"
    assert srn not in json_of(retried)["message"]
    # The delete's own answer is kept whole, so its retry gets the first answer (till it expires).
    again = api("GET", "/delete_record", params={"SRN": srn}, headers={"X-Request-ID": ids["delete"]})
    assert again.status_code == 200 and json_of(again) == json_of(deleted)


def test_entries_older_than_the_retention_are_pruned_and_their_ids_are_new_again(
        stack: SystemCopy, api: Api) -> None:
    tag = unique_srn()
    old, recent = f"old-{tag}", f"recent-{tag}"
    first = {"Name": "Expiring", "SRN": unique_srn("X"), "Section": "A"}
    assert api("POST", "/insert_record", json=first, headers={"X-Request-ID": old}).status_code == 201
    assert api("POST", "/insert_record", json={**first, "SRN": unique_srn("X")},
               headers={"X-Request-ID": recent}).status_code == 201
    # More expired entries than one batch, as a ledger that grew while nothing pruned it.
    backlog = LEDGER_PRUNE_BATCH * 2 + 500
    digits = " UNION ALL ".join(f"SELECT {digit} AS d" for digit in range(10))
    stack.sql(
        "INSERT INTO requests (request_id, routing_key, fingerprint, reply, created_at) "
        f"SELECT CONCAT('aged-{tag}-', a.d + 10 * b.d + 100 * c.d + 1000 * e.d), 'insert_record', "
        "REPEAT('0', 64), '{}', CURRENT_TIMESTAMP(3) - INTERVAL 2 DAY "
        f"FROM ({digits}) a, ({digits}) b, ({digits}) c, ({digits}) e "
        f"WHERE a.d + 10 * b.d + 100 * c.d + 1000 * e.d < {backlog}")
    # The first request's answer grows older than LEDGER_RETENTION_H (24 h).
    stack.sql(f"UPDATE requests SET created_at = created_at - INTERVAL 25 HOUR WHERE request_id = '{old}'")

    def left() -> list[str]:
        [[count]] = stack.sql(f"SELECT COUNT(*) FROM requests WHERE request_id LIKE '%-{tag}%'")
        return [count] if count == "1" else []

    wait_until(left, timeout=PRUNED_WITHIN_S)
    assert stack.sql(f"SELECT request_id FROM requests WHERE request_id LIKE '%-{tag}%'") == [[recent]]
    pruned = [json.loads(line[line.index("{"):]) for line in stack.compose(
        "logs", "--no-color", "consumer_three").splitlines() if '"ledger_pruned"' in line]
    assert sum(entry["entries"] for entry in pruned) >= backlog + 1
    assert max(entry["entries"] for entry in pruned) == LEDGER_PRUNE_BATCH  # in batches, never all at once

    # The expired id is new again: another request under it is carried out, not a conflict.
    second = {**first, "SRN": unique_srn("X")}
    reused = api("POST", "/insert_record", json=second, headers={"X-Request-ID": old})
    assert reused.status_code == 201 and json_of(reused)["record"]["SRN"] == second["SRN"]
    # A recent id still is the request it was.
    conflict = api("POST", "/insert_record", json=second, headers={"X-Request-ID": recent})
    assert conflict.status_code == 409 and json_of(conflict)["error"] == "request_id_conflict"
