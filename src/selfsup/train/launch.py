"""`selfsup train --nproc N`: torchrun, started for you, on this machine.

The processes are started by torchrun's own launcher (`torch.distributed.launcher.elastic_launch`,
standalone rendezvous on a free local port): the same agent `torchrun` runs, so one code path is
tested. Each process runs `python -m selfsup <the same command>`. When one fails, the agent stops
the others; we turn its report into one line naming the rank and its exit status (torchrun
itself would print a Python traceback of its own), and exit with that status.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from selfsup.console import say


def launch_torchrun(nproc: int, selfsup_args: list[str]) -> int:
    """Run `selfsup <args>` in `nproc` processes under torchrun's agent; returns the exit status."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torch threads per process: the cores shared out, instead of every process using them all. The
    # agent hands its environment to the processes; ours gets its own value back afterwards.
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
        rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5, start_method="spawn",
    )
    say(f"[dim]launching {nproc} processes (as torchrun --standalone --nproc_per_node={nproc} -m selfsup "
        f"{' '.join(selfsup_args)})")
    try:
        elastic_launch(config, sys.executable)("-m", "selfsup", *selfsup_args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        say(f"[red]training process {rank} {how}; the other processes were stopped")
        return code if code > 0 else 1
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    return 0
