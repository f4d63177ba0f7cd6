"""The machinery of provisioning's steps (the table of steps is STEPS in services/provision/__main__.py, whose
docstring describes each target's signature): a step, how its "module:function" targets are loaded, how its lines
are printed."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One part of the pipeline's resources; services/provision/__main__.py's docstring gives each target's signature."""

    name: str
    provision: str
    deprovision: str | None = None
    requires: str | None = None
    costs: str | None = None


def load(target: str | None) -> Callable | None:
    """The function named by "module:function", or None when there is none or its module does not exist yet."""
    if target is None:
        return None
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise
    return getattr(module, function_name)


def run_step(name: str, function: Callable, *args: object) -> None:
    """Print the lines of one step's function, each prefixed with the step's name, then how long it took."""
    started = time.monotonic()
    for line in function(*args):
        print(f"  [{name}] {line}", flush=True)
    print(f"  [{name}] done in {time.monotonic() - started:.1f} s", flush=True)
