"""The check runner of the deployment checks (check_chart.py, check_compose.py).

Each check is named; a failing one prints `FAIL  name: detail` to stderr and the run goes on,
so one run reports every problem. With --verbose, passing checks print `ok    name (detail)`.
"""

from __future__ import annotations

import sys
from typing import Any, Callable


class Checks:
    """Collects named checks; a failing check records its message and the run goes on."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.passed = 0
        self.failures: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"ok    {name}{' (' + detail + ')' if detail else ''}")
        else:
            self.failures.append(f"{name}{': ' + detail if detail else ''}")
            print(f"FAIL  {self.failures[-1]}", file=sys.stderr)
        return ok

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Runs fn; an exception is a failure of `name`. A string result is the detail."""
        try:
            result = fn()
        except AssertionError as e:
            self.check(name, False, str(e))
            return None
        except Exception as e:  # noqa: BLE001 - every error is a finding here
            self.check(name, False, f"{type(e).__name__}: {e}")
            return None
        self.check(name, True, result if isinstance(result, str) else "")
        return result
