"""The system end to end, through its HTTP API: inserts, reads, deletes, health checks."""

from __future__ import annotations

import time
from typing import Any

import requests

from bench.load import Run, inserts
from bench.system import BENCH_TAG, DB_CONNECT, CpuMeter, System


class Ours:
    def __init__(self, system: System, duration: float):
        self.system = system
        self.duration = duration
        self.base = system.base

    def inserts(self, clients: int, tag: str, seconds: float | None = None) -> dict[str, Any]:
        return inserts(self.base, "insert_record", clients, seconds or self.duration, f"{BENCH_TAG}{tag}")

    def inserts_with_cpu(self, clients: int, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """An insert run, and the CPU per insert (ms) of each of our containers during it, and their sum."""
        meter = CpuMeter(self.system.insert_path())
        row = self.inserts(clients, tag)
        return row, {"clients": clients, **meter.per_request(row["requests"])}

    def deletes(self, clients: int, tag: str, inserted: int) -> dict[str, Any]:
        """Delete what the insert run at the same concurrency created (and nothing more)."""
        def delete(session: requests.Session, n: int) -> bool:
            srn = f"{BENCH_TAG}{tag}{clients:02d}{n:07d}"
            response = session.get(f"{self.base}/delete_record", params={"SRN": srn}, timeout=30)
            return response.status_code == 200
        return Run("delete_record", clients, self.duration).go(delete, max_requests=inserted).row()

    def reads(self, clients: int, rows: int) -> dict[str, Any]:
        row = Run(f"read_database ({rows} rows)", clients, self.duration).go(
            lambda session, _: session.get(f"{self.base}/read_database", timeout=60).status_code == 200).row()
        return {**row, "rows": rows}

    def health(self, clients: int) -> dict[str, Any]:
        return Run("health_check", clients, self.duration).go(
            lambda session, n: session.get(f"{self.base}/health_check", params={"message": str(n)},
                                           timeout=30).status_code == 200).row()

    def rows_in_table(self) -> int:
        reply = requests.get(f"{self.base}/read_database", timeout=120).json()
        return int(reply["count"])

    def seed(self, total: int) -> None:
        """Fill `students` up to `total` rows, straight into MySQL (the API is not what is measured here)."""
        missing = total - self.rows_in_table()
        if missing <= 0:
            return
        script = DB_CONNECT + f"""
cur = c.cursor()
start = {int(time.time())}
rows = [("{BENCH_TAG}S%d%07d" % (start, i), "Seeded Student", "S", "bench-seed") for i in range({missing})]
for i in range(0, len(rows), 1000):
    cur.executemany("INSERT INTO students (srn, name, section, request_id) VALUES (%s, %s, %s, %s)",
                    rows[i:i + 1000])
c.commit()
"""
        self.system.in_network(script)

    def clean_up(self) -> None:
        self.system.in_network(DB_CONNECT + f"""
c.cursor().execute("DELETE FROM students WHERE srn LIKE '{BENCH_TAG}%'")
c.commit()
""")
