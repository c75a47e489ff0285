"""The run record: what a run chose and measured, carried in the message hub and in checkpoints."""
import time
from contextlib import contextmanager

KEY = 'tip_adapter_mm'


def get_record(runner) -> dict:
    return dict(runner.message_hub.get_info(KEY) or {})


def update_record(runner, **values):
    record = get_record(runner)
    record.update(values)
    runner.message_hub.update_info(KEY, record)


@contextmanager
def timed(runner, stage: str):
    """Add the wall time of the block to ``record['timings'][stage]`` (seconds)."""
    start = time.perf_counter()
    yield
    record = get_record(runner)
    timings = dict(record.get('timings', {}))
    timings[stage] = round(timings.get(stage, 0.) + time.perf_counter() - start, 3)
    update_record(runner, timings=timings)
