#!/usr/bin/env python3
"""The bill-run benchmark, one measurement per process (so peak memory is the run's own).

    .venv/bin/python bench/billrun.py --db postgres://.../courtyard_bench_full --units 100000 --mode courtyard
    .venv/bin/python bench/billrun.py --db ... --units 100000 --mode raw

Bills the current month (which the generator leaves unbilled) for the largest
estates until `--units` units are covered, then deletes what it made, so the
database is as before. `courtyard` runs the fees plugin's own bill run
(`plugins.fees.billing.run_bill_run`, estate by estate, in each estate's scope
like the monthly job); `raw` is the ceiling: the same bills and lines worked
out in Python and written with COPY over asyncpg in chunks of the same size,
without the plugin's checks. Prints one JSON object: duration, bills per
second, resident memory at start, at each quarter and at the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("COURTYARD_NO_BOOTSTRAP", "1")

CHUNK = 500


def memory() -> dict[str, int]:
    """Resident set size of this process now and at its peak so far, in MiB."""
    from bench.procstat import status_mib

    return {"rss": int(status_mib("self", "VmRSS")), "peak": int(status_mib("self", "VmHWM"))}


async def pick_estates(conn, units: int) -> tuple[list[tuple[int, str, int]], date]:
    """The largest estates covering `units` units, and the month to bill (the local current month)."""
    from zoneinfo import ZoneInfo

    rows = await conn.fetch(
        "SELECT p.id, p.code, count(u.id) AS n FROM core_project p JOIN core_unit u ON u.project_id = p.id "
        "GROUP BY p.id, p.code ORDER BY n DESC, p.id"
    )
    chosen, total = [], 0
    for row in rows:
        if total >= units:
            break
        chosen.append((row["id"], row["code"], row["n"]))
        total += row["n"]
    today = datetime.now(timezone.utc).astimezone(ZoneInfo("Asia/Shanghai")).date()
    return chosen, today.replace(day=1)


async def cleanup(conn, project_ids: list[int], period: date, sequences: dict[int, int] | None = None) -> int:
    """Delete the bills of `period` in these estates (and what hangs on them); reset the bill numbers."""
    async with conn.transaction():
        # The rows that point at these bills are deleted first, by hand: the foreign-key triggers would look
        # for them bill by bill, through columns without an index (see docs/benchmarks.md).
        await conn.execute("SET LOCAL session_replication_role = replica")
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM fees_bill WHERE period = $1 AND project_id = ANY($2::int[])", period, project_ids)]
        if ids:
            await conn.execute("DELETE FROM fees_allocation WHERE bill_id = ANY($1::int[])", ids)
            await conn.execute("DELETE FROM core_timeline_entry WHERE subject = 'fees.Bill' AND subject_id = ANY($1::bigint[])", ids)
            await conn.execute("DELETE FROM fees_bill_line WHERE period = $1 AND project_id = ANY($2::int[])", period, project_ids)
            await conn.execute("DELETE FROM fees_bill WHERE id = ANY($1::int[])", ids)
        await conn.execute("DELETE FROM fees_bill_run WHERE period = $1 AND project_id = ANY($2::int[])", period, project_ids)
        for project_id, value in (sequences or {}).items():
            await conn.execute("UPDATE core_sequence SET last_value = $1 WHERE project_id = $2 AND key = 'fees.bill'",
                               value, project_id)
    return len(ids)


async def bill_sequences(conn, project_ids: list[int]) -> dict[int, int]:
    rows = await conn.fetch("SELECT project_id, last_value FROM core_sequence WHERE key = 'fees.bill' AND project_id = ANY($1::int[])",
                            project_ids)
    return {r["project_id"]: r["last_value"] for r in rows}


async def run_courtyard(url: str, estates, period: date, samples: list[dict]) -> int:
    from core import db
    from core.models import Project
    from core.plugins import PluginHost, use_host
    from core.scope import Scope, use_scope
    from plugins.fees.billing import run_bill_run

    host = use_host(PluginHost.discover(entry_points=False))
    await db.init(host, url)
    total_units = sum(n for _id, _code, n in estates)
    done_before = 0
    created = 0
    quarter = [total_units * q // 4 for q in (1, 2, 3)]
    try:
        for project_id, _code, units in estates:
            with use_scope(Scope.of([project_id])):
                project = await Project.get(id=project_id)

                async def progress(done, _total, base=done_before):
                    if quarter and base + done >= quarter[0]:
                        quarter.pop(0)
                        samples.append({"units": base + done, **memory()})

                run = await run_bill_run(project, period, progress=progress)
                created += run.bills_created
            done_before += units
    finally:
        await db.close()
    return created


async def run_raw(conn, url: str, estates, period: date, samples: list[dict]) -> int:
    """The same bills with nothing but asyncpg: read units and rates, compute, COPY bills and lines per chunk."""
    from bench.loader import Layout
    from core import db
    from core.plugins import PluginHost
    from plugins.fees.models import Bill, BillLine
    from plugins.fees.money import round_fen

    # The models only tell which columns exist and their defaults (plugins add columns over time).
    await db.init(PluginHost.discover(entry_points=False), url)
    await db.close()
    issued = datetime.now(timezone.utc)
    bill_layout = Layout.of(Bill, ("id", "project_id", "number", "unit_id", "customer_id", "period", "due_date", "total",
                                   "paid", "status", "issued_at"), issued)
    line_layout = Layout.of(BillLine, ("project_id", "bill_id", "unit_id", "item_id", "period", "description", "quantity",
                                       "unit_price", "gross", "discount", "amount"), issued)

    total_units = sum(n for _id, _code, n in estates)
    quarter = [total_units * q // 4 for q in (1, 2, 3)]
    done = created = 0
    due = period.replace(day=15)
    for project_id, _code, _n in estates:
        items = await conn.fetch("SELECT id, name, basis FROM fees_fee_item WHERE project_id = $1 AND is_active ORDER BY \"order\", id",
                                 project_id)
        rates = {(r["item_id"], r["use"]): r["price"] for r in await conn.fetch(
            "SELECT item_id, use, price FROM fees_fee_rate WHERE project_id = $1 AND valid_from <= $2 "
            "AND (valid_to IS NULL OR valid_to >= $2)", project_id, period)}
        serial = await conn.fetchval("SELECT last_value FROM core_sequence WHERE project_id = $1 AND key = 'fees.bill'", project_id) or 0
        after = 0
        while True:
            units = await conn.fetch("SELECT id, area, use FROM core_unit WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                                     project_id, after, CHUNK)
            if not units:
                break
            after = units[-1]["id"]
            owners = dict(await conn.fetch(
                "SELECT unit_id, customer_id FROM core_customer_unit WHERE unit_id = ANY($1::int[]) AND relation = 'owner' "
                "AND end_date IS NULL", [u["id"] for u in units]))
            bills, lines = [], []
            for unit in units:
                drafts = []
                for item in items:
                    price = rates.get((item["id"], unit["use"]))
                    if price is None:
                        continue
                    quantity = Decimal(unit["area"]) if item["basis"] == "area" else Decimal(1)
                    amount = round_fen(quantity * price)
                    drafts.append((item["id"], item["name"], quantity, price, amount))
                if drafts:
                    serial += 1
                    bills.append((unit, drafts, serial))
            async with conn.transaction():
                ids = [r[0] for r in await conn.fetch("SELECT nextval('fees_bill_id_seq') FROM generate_series(1, $1)", len(bills))]
                bill_rows = []
                for bill_id, (unit, drafts, number) in zip(ids, bills):
                    total = sum((d[4] for d in drafts), Decimal(0))
                    bill_rows.append((bill_id, project_id, f"B{period:%Y%m}-{number:06d}", unit["id"], owners.get(unit["id"]),
                                      period, due, total, Decimal(0), "open", issued, *bill_layout.fill))
                    for item_id, name, quantity, price, amount in drafts:
                        lines.append((project_id, bill_id, unit["id"], item_id, period, name, quantity, price, amount,
                                      Decimal(0), amount, *line_layout.fill))
                await conn.copy_records_to_table("fees_bill", records=bill_rows, columns=bill_layout.columns)
                await conn.copy_records_to_table("fees_bill_line", records=lines, columns=line_layout.columns)
                await conn.execute("UPDATE core_sequence SET last_value = $1 WHERE project_id = $2 AND key = 'fees.bill'",
                                   serial, project_id)
            created += len(bills)
            done += len(units)
            if quarter and done >= quarter[0]:
                quarter.pop(0)
                samples.append({"units": done, **memory()})
    return created


async def main_async(args) -> dict:
    import asyncpg

    from bench.loader import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(args.db))
    try:
        estates, period = await pick_estates(conn, args.units)
        project_ids = [e[0] for e in estates]
        await cleanup(conn, project_ids, period)  # leftovers of an interrupted run
        sequences = await bill_sequences(conn, project_ids)
        samples = [{"units": 0, **memory()}]
        started, cpu_started = time.perf_counter(), time.process_time()
        if args.mode == "courtyard":
            created = await run_courtyard(args.db, estates, period, samples)
        else:
            created = await run_raw(conn, args.db, estates, period, samples)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        samples.append({"units": sum(e[2] for e in estates), **memory()})
        deleted = await cleanup(conn, project_ids, period, sequences)
    finally:
        await conn.close()
    return {
        "mode": args.mode, "estates": len(estates), "units": sum(e[2] for e in estates), "period": period.isoformat(),
        "bills": created, "deleted_after": deleted, "seconds": round(seconds, 2),
        "bills_per_second": round(created / seconds, 1) if seconds else None,
        # This process's CPU only (PostgreSQL's is not in it): per bill, comparable on a busy machine.
        "cpu_seconds": round(cpu, 2), "cpu_ms_per_bill": round(cpu * 1000 / created, 3) if created else None,
        "rss_start_mib": samples[0]["rss"], "rss_end_mib": samples[-1]["rss"],
        "rss_peak_mib": max(s["peak"] for s in samples), "samples": samples,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="One bill-run measurement (see the module documentation).")
    parser.add_argument("--db", required=True)
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--mode", choices=("courtyard", "raw"), default="courtyard")
    parser.add_argument("--profile", help="write a pyinstrument profile of the run to this file (.txt: text, else HTML)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
        result = asyncio.run(main_async(args))
        profiler.stop()
        text = args.profile.endswith(".txt")
        Path(args.profile).write_text(profiler.output_text(unicode=True, color=False) if text else profiler.output_html())
        result["profile"] = args.profile
    else:
        result = asyncio.run(main_async(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
