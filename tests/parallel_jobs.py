"""Jobs for the run_parallel tests: module-level functions in a light module, so spawned workers import little."""
import os
import time


def slow_first(job):
    """Job 0 finishes last; "boom" fails; returns the job, the worker's pid and its torch threads."""
    import torch  # already imported by the worker's initializer

    if job == 0:
        time.sleep(1.0)
    if job == "boom":
        raise ValueError("exploded on purpose")
    return job, os.getpid(), torch.get_num_threads()


def sleep_and_report(job):
    """Write this worker's pid to the file ``job`` names, then sleep (a job that outlives a killed parent)."""
    path, seconds = job
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()
