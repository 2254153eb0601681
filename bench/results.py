"""The JSON every benchmark here writes: its name, the date, the machine, its settings and its rows."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write_result(benchmark: str, settings: dict[str, Any], rows: list[dict[str, Any]], out: Path,
                 **extra: Any) -> dict[str, Any]:
    result = {"benchmark": benchmark, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}, "rows": rows,
              **extra}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return result
