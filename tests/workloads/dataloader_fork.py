"""DataLoaders with num_workers=2 and the default (fork) start method; workers log through torch's loggers.

Two epochs, bodies unique per (phase, kind, index) so a test can count duplicates at the collector:

* ``short``: an ordinary (non-persistent) DataLoader. Its workers exit right after the epoch, the usual life of
  DataLoader workers for a short epoch.
* ``long``: a persistent DataLoader whose workers stay alive ``--linger`` seconds after the epoch (a training loop
  that goes on), so their own export machinery has time to run before the parent shuts them down.

Workers log ``<phase>-worker-init-<id>`` (worker_init_fn) and ``<phase>-worker-item-<i>`` (__getitem__). The parent
logs ``parent-before`` and does 0.5 s of "set-up" (so the process's first export, which opens the gRPC connection,
is over before anything forks), then ``parent-queued-at-fork`` right before the first DataLoader forks its workers
(it is normally still in the bridge's queue at that moment), and ``parent-after`` at the end. Prints one JSON
line (items seen per phase, parent pid, worker pids, start method) and exits 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing
import os
import time

import torch
from torch.utils.data import DataLoader, Dataset

LOG = logging.getLogger("torch._dynamo")
ITEMS = 8


class Items(Dataset):
    def __init__(self, phase: str) -> None:
        self.phase = phase

    def __len__(self) -> int:
        return ITEMS

    def __getitem__(self, index: int) -> torch.Tensor:
        LOG.warning("%s-worker-item-%d", self.phase, index)
        return torch.tensor([index, os.getpid()])


def worker_init(phase: str, worker_id: int) -> None:
    LOG.warning("%s-worker-init-%d", phase, worker_id)


def epoch(phase: str, persistent: bool) -> tuple[list[int], set[int], DataLoader]:
    loader = DataLoader(Items(phase), batch_size=1, num_workers=2, persistent_workers=persistent,
                        worker_init_fn=functools.partial(worker_init, phase))
    items, pids = [], set()
    for batch in loader:
        items.append(int(batch[0][0]))
        pids.add(int(batch[0][1]))
    return sorted(items), pids, loader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--linger", type=float, default=1.5)
    args = parser.parse_args()
    LOG.warning("parent-before")
    time.sleep(0.5)
    LOG.warning("parent-queued-at-fork")
    short_items, short_pids, _ = epoch("short", persistent=False)
    long_items, long_pids, loader = epoch("long", persistent=True)
    time.sleep(args.linger)
    LOG.warning("parent-after")
    print(json.dumps({
        "short_items": short_items, "long_items": long_items, "parent_pid": os.getpid(),
        "worker_pids": sorted(short_pids | long_pids), "start_method": multiprocessing.get_start_method(),
    }), flush=True)
    del loader


if __name__ == "__main__":
    main()
