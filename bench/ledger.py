"""The request ledger's size per million entries, and its pruning under the insert load.

    python bench/ledger.py --env-file tests/artifacts/stack.env [--rounds 3] [--backlog 200000]

On a running system (a test copy kept with MSTEST_KEEP=1, say), with `wrk` on the PATH:

1. Size: `--backlog` entries shaped like an insert's, in an empty copy of the table, (a random request id, its
   fingerprint, the answer with the record, the SRN as subject) are added, and
   the table's data and index size per million entries is read from
   information_schema after ANALYZE TABLE.
2. Pruning under load: interleaved rounds of `wrk` inserts (bench/http.lua, 32
   connections) with nothing to prune, and with `--backlog` expired entries that
   consumer_three deletes meanwhile; each round's inserts per second, latency
   p50/p99 and answers other than 201, then the median and range of each kind.
   consumer_three must prune every LEDGER_PRUNE_INTERVAL_S seconds or less than the
   round's length (the test copies use 2 s).

Only this machine is loaded (127.0.0.1), for a fixed time per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wrk import available, load  # noqa: E402
from scripts.copies import root_sql  # noqa: E402
from scripts.stack import Stack, service_container  # noqa: E402

EXPIRED = "created_at < CURRENT_TIMESTAMP(3) - INTERVAL 1 DAY"
DIGITS = " UNION ALL ".join(f"SELECT {digit} AS d" for digit in range(10))
# Up to 1,000,000 numbers from six copies of the ten digits.
NUMBERS = (f"SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d AS n "
           f"FROM ({DIGITS}) a, ({DIGITS}) b, ({DIGITS}) c, ({DIGITS}) e, ({DIGITS}) f, ({DIGITS}) g")


def add_entries(db: str, tag: str, count: int, age_h: float, table: str = "requests") -> None:
    """`count` ledger entries like an insert's: random ids (as the producer's are), `age_h` old."""
    root_sql(db, (
        f"INSERT INTO {table} (request_id, routing_key, fingerprint, reply, subject, created_at) "
        f"SELECT LEFT(SHA2(CONCAT('{tag}', n), 256), 32), 'insert_record', SHA2(CONCAT('f{tag}', n), 256), "
        "CONCAT('{\"ok\": true, \"result\": {\"record\": {\"Name\": \"Bench Student\", \"SRN\": \"L', "
        f"'{tag}', n, '\", \"Section\": \"B\"}}}}}}'), CONCAT('L', '{tag}', n), "
        f"CURRENT_TIMESTAMP(3) - INTERVAL {int(age_h * 3600)} SECOND FROM ({NUMBERS}) AS numbers "
        f"WHERE n < {count}"))


def size_per_million(db: str, entries: int) -> tuple[float, float]:
    """Data and index bytes per million entries, in an empty copy of the ledger's table (the
    ledger's own has the free space of pruned entries in it)."""
    probe = "ledger_size_probe"
    root_sql(db, f"DROP TABLE IF EXISTS {probe}; CREATE TABLE {probe} LIKE requests")
    try:
        add_entries(db, "size-", entries, age_h=0, table=probe)
        root_sql(db, f"ANALYZE TABLE {probe}")
        [line] = root_sql(db, "SELECT data_length, index_length FROM information_schema.tables "
                              f"WHERE table_schema = DATABASE() AND table_name = '{probe}'").splitlines()
    finally:
        root_sql(db, f"DROP TABLE IF EXISTS {probe}")
    data, index = (int(value) * 1_000_000 / entries for value in line.split("\t"))
    return data, index


def count(db: str, where: str) -> int:
    return int(root_sql(db, f"SELECT COUNT(*) FROM requests WHERE {where}").strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    if not available():
        sys.exit("wrk is needed: apt-get install wrk")
    stack = Stack(args.env_file.resolve())
    stack.load()
    db = service_container(stack.project, "db")
    if db is None:
        sys.exit(f"no db container in compose project {stack.project}: bring the system up first")
    url = f"http://127.0.0.1:{stack.get('PRODUCER_PORT')}"

    data, index = size_per_million(db, args.backlog)
    print(f"ledger size: data {data / 2**20:.0f} MiB, indexes {index / 2**20:.0f} MiB per million entries "
          f"(from {args.backlog} like an insert's)")
    tag = f"s{int(time.time())}-"

    results: dict[str, list[dict[str, float]]] = {"no backlog": [], "pruning": []}
    for round_number in range(args.rounds):
        for kind in ("no backlog", "pruning"):
            # Wait until nothing is left to prune, so the "no backlog" rounds have none.
            deadline = time.monotonic() + 300
            while count(db, EXPIRED) and time.monotonic() < deadline:
                time.sleep(1)
            if kind == "pruning":
                add_entries(db, f"r{round_number}-{tag}", args.backlog, age_h=48)
            started = time.monotonic()
            figures = load(url, 32, args.seconds, insert_prefix=f"L{round_number}{kind[0]}{tag[1:-1]}")
            left = count(db, EXPIRED)
            figures["expired_left"] = left
            print(f"round {round_number + 1} {kind}: {figures} ({time.monotonic() - started:.0f} s)")
            results[kind].append(figures)
    print("\n| load | inserts/s | p50 ms | p99 ms | not 201 or failed | expired left after the round |")
    print("|---|---|---|---|---|---|")
    for kind, rounds in results.items():
        cells = []
        for key in ("per_s", "p50_ms", "p99_ms", "errors", "expired_left"):
            values = [r[key] for r in rounds]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
