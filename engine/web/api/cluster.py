"""The engines running on this database (issue 15): each instance's last heartbeat and who holds which
lease (a destination's deliverer, the leader of the once-per-cluster jobs)."""
from __future__ import annotations

import time
from typing import Any

from ...store import cluster
from ...store.database import Transaction
from .declaration import Call, Operation
from .schema import record_json, record_schema


def show_cluster(txn: Transaction, _call: Call) -> dict[str, Any]:
    return record_json(cluster.overview(txn, time.time()))


OPERATIONS = [
    Operation("GET", "/cluster", "getCluster", "The engine instances on this database with their last heartbeat "
              "(epoch seconds), and every lease with its holder, generation and end (a lease past its end is "
              "held by nobody).", "viewer", record_schema(cluster.ClusterOverview), show_cluster),
]
