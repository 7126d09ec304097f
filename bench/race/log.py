"""The race's progress log: each line stamped with the seconds since the race started, to stdout and run.log."""

import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Log:
    start: float = field(default_factory=time.monotonic)
    file: TextIO | None = None

    def __call__(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f}s] {msg}"
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()
        try:
            print(line, flush=True)
        except OSError:
            pass  # stdout gone (e.g. piped into head): keep racing, run.log has everything
