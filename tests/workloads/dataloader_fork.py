"""DataLoader with num_workers=2 and the default (fork) start method; workers log through torch's loggers.

Bodies are unique per (kind, index) so a test can count duplicates at the collector: ``worker-init-<id>`` from
``worker_init_fn``, ``worker-item-<i>`` from ``__getitem__`` (in a worker), ``parent-before`` / ``parent-after``
from the parent. Workers are persistent and kept alive ``--linger`` seconds after the data is consumed (as in a
training loop that runs on), so their own export machinery has time to run before the parent shuts them down.
Prints one JSON line (items seen, parent pid, worker pids, start method) and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import time

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

LOG = logging.getLogger("torch._dynamo")
ITEMS = 8


class Items(Dataset):
    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, index: int) -> torch.Tensor:
        LOG.warning("worker-item-%d", index)
        return torch.tensor([index, os.getpid()])


def worker_init(worker_id: int) -> None:
    LOG.warning("worker-init-%d", worker_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--linger", type=float, default=float(__import__("os").environ.get("LINGER", "1.5")))
    args = parser.parse_args()
    LOG.warning("parent-before")
    loader = DataLoader(Items(), batch_size=1, num_workers=2, worker_init_fn=worker_init, persistent_workers=True)
    items, worker_pids = [], set()
    for batch in loader:
        items.append(int(batch[0][0]))
        worker_pids.add(int(batch[0][1]))
    time.sleep(args.linger)
    LOG.warning("parent-after")
    print(json.dumps({
        "items": sorted(items), "parent_pid": os.getpid(), "worker_pids": sorted(worker_pids),
        "start_method": multiprocessing.get_start_method(),
    }), flush=True)
    del loader


if __name__ == "__main__":
    main()
