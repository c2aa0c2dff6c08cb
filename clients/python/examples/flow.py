#!/usr/bin/env python3
"""An engineer's flow with the Python client: catalog, masked sample, a DataFrame job in the
lab, then (given an approved scenario) the same query in production.

    export SHUYU_ENDPOINT=https://127.0.0.1:7443
    export SHUYU_CREDENTIALS=demo-domain/credentials/engineer
    export SHUYU_DATASET=health_records          # optional: the first visible dataset
    export SHUYU_SCENARIO_ID=sc_...              # optional: promote to production under it
    python clients/python/examples/flow.py

Configuration is read from the environment only; there is no command line.
"""

from __future__ import annotations

import os
import sys

from datafusion import col
from datafusion import functions as f

from shuyu_client import Client, ShuyuError, pb, status_name


def show_progress(p: pb.JobProgress) -> None:
    where = (
        f"#{p.queue_position} in queue"
        if p.queue_position
        else f"{p.rows} rows, {p.bytes_scanned} bytes read"
    )
    print(f"  … {p.stage}: {where}")


def main() -> None:
    endpoint = os.environ.get("SHUYU_ENDPOINT", "https://127.0.0.1:7443")
    credentials = os.environ.get("SHUYU_CREDENTIALS", "demo-domain/credentials/engineer")
    scenario_id = os.environ.get("SHUYU_SCENARIO_ID")

    with Client.connect(endpoint, credentials) as client:
        me = client.whoami()
        print(f"connected as {me.real_name} ({pb.Role.Name(me.role)}), tenant {me.tenant_id}")

        # The catalog: names, columns and how each column is classified and masked.
        datasets = client.datasets()
        for ds in datasets:
            print(f"- {ds.name} ({ds.id}): {ds.n_rows} rows")
        if not datasets:
            sys.exit("no dataset is granted to this tenant")
        name = os.environ.get("SHUYU_DATASET") or datasets[0].name
        dataset = client.dataset(name)
        print(client.schema(dataset))

        # A masked sample: every value is a string rendered by the masking policy.
        print(client.sample(dataset.id, n_rows=5).to_pylist())

        # Build a DataFrame against empty tables with the catalog schema (no data is local).
        # With a scenario, only its data list's columns are visible: the same DataFrame then
        # also runs in production.
        scenario = client.scenario(scenario_id) if scenario_id else None
        ctx = client.session(scenario)
        table = ctx.table(dataset.name)
        group = next(
            (
                c.name
                for c in dataset.columns
                if c.name in table.schema().names and c.data_type == "string"
            ),
            table.schema().names[0],
        )
        df = table.filter(col(group).is_not_null()).aggregate([col(group)], [f.count().alias("n")])

        # Lab: runs on masked samples; the preview is shown directly, never exportable.
        lab = client.wait(client.submit(df, mode="lab", ctx=ctx), on_progress=show_progress)
        print(f"lab job {lab.id}: {status_name(lab)} {lab.error}")
        if lab.status == pb.JOB_STATUS_SUCCEEDED:
            print(client.preview(lab).to_pylist())

        # Production: the lab job's exact query (same query_sha256) on the raw encrypted data,
        # under an approved scenario; the result is staged for the export gate and only a
        # masked preview comes back.
        if scenario_id and lab.status == pb.JOB_STATUS_SUCCEEDED:
            prod = client.wait(client.promote(lab.id, scenario_id), on_progress=show_progress)
            print(f"production job {prod.id}: {status_name(prod)} {prod.error}")
            print(
                f"same query: {prod.query_sha256 == lab.query_sha256} ({prod.query_sha256[:16]}…)"
            )
            print(client.preview(prod).to_pylist())

        # Metered use of this tenant this month.
        for tenant in client.usage().tenants:
            print(f"usage {tenant.tenant_name}: {tenant.jobs} jobs, {tenant.total.cpu_ms} ms CPU")


if __name__ == "__main__":
    try:
        main()
    except ShuyuError as e:
        sys.exit(f"shuyu: {e.code}: {e.message}")
