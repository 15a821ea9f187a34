"""Test workload: forks right after logging, 15 times; parent and child each log a marker (p-K, c-K)."""
import logging, os, sys, time, torch
log = logging.getLogger("torch._dynamo")
for k in range(15):
    log.warning("p-%d", k)
    time.sleep(0.19)
    pid = os.fork()
    if pid == 0:
        log.warning("c-%d", k)
        import torch_otel
        torch_otel.flush(5)
        os._exit(0)
    os.waitpid(pid, 0)
