#!/usr/bin/env python3
"""FAKE Lean REPL for tests (no Lean toolchain can exist here). Stdlib only; speaks the REPL's framing exactly.

It reads requests the way `REPL/Main.lean` does (lines up to a blank line, each line right-trimmed and joined
*without* newlines; a request starting with `#` or `--` is skipped; EOF ends the process) and answers in one
of three ways:

- transcript replay (`FAKE_REPL_TRANSCRIPT=<dir>/<name>`): the i-th request must equal the i-th request of
  `<name>.in` (as parsed JSON) and gets the i-th answer of `<name>.expected.out`, byte for byte;
- rules (`FAKE_REPL_RULES=<file.json>`: a list of `[regex, response]`): the first regex found in the request's
  `cmd` (or `tactic`) picks the response (a list of responses: all of them, one frame each; the file is re-read
  for every request); the string "$ENV" in it becomes the next env id, "$PS" the next
  proof-state id. Without a matching rule, a command gets `{"env": <next>}`;
- fault markers inside a `cmd`, for the pool's fault tests: `FAKE_HANG` (never answers), `FAKE_CRASH` (exits 3),
  `FAKE_GARBAGE` (answers non-JSON), `FAKE_GROW` (allocates ~`FAKE_REPL_GROW_MB` MiB, default 400, and keeps
  it), `FAKE_SLOW_<ms>` (sleeps), `FAKE_SPAWN` (starts
  `sleep 1000`, writes its pid to `FAKE_REPL_CHILD_PID`, then hangs), `FAKE_CHATTER` (writes an unrequested frame after its answer).

`FAKE_REPL_DELAY_MS` makes every command take that long (benchmarks). Every process logs its requests, one JSON line each, to `FAKE_REPL_LOG` when that is set.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

_hoard: list[bytearray] = []


def read_request(stdin) -> str | None:
    """Lines up to a blank line, right-trimmed and concatenated (REPL `getLines`); None at EOF."""
    parts: list[str] = []
    while True:
        line = stdin.readline()
        if line == "":
            return "".join(parts) if parts else None
        if not line.strip():
            if parts:
                return "".join(parts)
            continue
        parts.append(line.rstrip())


def write(out: str) -> None:
    sys.stdout.write(out + "\n\n")
    sys.stdout.flush()


def split_blocks(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        content = f.read()
    return [b for b in content.split("\n\n") if b.strip()]


class Transcript:
    def __init__(self, base: str):
        self.requests = [json.loads("".join(x.rstrip() for x in b.splitlines())) for b in split_blocks(base + ".in")
                         if not b.lstrip().startswith(("#", "--"))]
        self.answers = [b.strip("\n") for b in split_blocks(base + ".expected.out")]
        self.i = 0

    def answer(self, request: dict) -> str:
        i, self.i = self.i, self.i + 1
        if i >= len(self.requests) or request != self.requests[i]:
            return json.dumps({"message": f"fake_repl: request {i} differs from the transcript"})
        return self.answers[i]


class Rules:
    def __init__(self, path: str | None):
        self.path = path
        self.env = 0
        self.ps = 0

    def rules(self) -> list[tuple[re.Pattern, object]]:
        if not self.path:
            return []
        with open(self.path, encoding="utf-8") as f:  # re-read each time: tests swap rules between cases
            return [(re.compile(rx, re.S), resp) for rx, resp in json.load(f)]

    def answer(self, request: dict) -> str:
        key = request.get("cmd", request.get("tactic", ""))
        for rx, resp in self.rules():
            if rx.search(key):
                if isinstance(resp, list):  # several frames: what a proof that writes to stdout makes the REPL send
                    return "\n\n".join(self._fill(json.dumps(r, ensure_ascii=False)) for r in resp)
                return self._fill(json.dumps(resp, ensure_ascii=False))
        if "cmd" in request or "path" in request or "unpickleEnvFrom" in request:
            return self._fill('{"env": "$ENV"}')
        if "proofState" in request and request["proofState"] >= self.ps:
            return json.dumps({"message": "Unknown proof state."})
        return self._fill('{"proofState": "$PS", "goals": [], "proofStatus": "Completed"}')

    def _fill(self, text: str) -> str:
        while '"$ENV"' in text:
            text = text.replace('"$ENV"', str(self.env), 1)
            self.env += 1
        while '"$PS"' in text:
            text = text.replace('"$PS"', str(self.ps), 1)
            self.ps += 1
        return text


def faults(request: dict) -> str | None:
    """Act on a fault marker; returns an answer override, or None to answer normally."""
    cmd = request.get("cmd", "")
    if "FAKE_SPAWN" in cmd:  # a grandchild that must die with the group
        import subprocess

        child = subprocess.Popen(["sleep", "1000"])
        sys.stderr.write(f"child {child.pid}\n")
        sys.stderr.flush()
        with open(os.environ.get("FAKE_REPL_CHILD_PID", os.devnull), "w") as f:
            f.write(str(child.pid))
    if "FAKE_HANG" in cmd or "FAKE_SPAWN" in cmd:
        while True:
            time.sleep(3600)
    if "FAKE_CRASH" in cmd:
        sys.stderr.write("fake_repl: INTERNAL PANIC: crashing on purpose\n")
        sys.stderr.flush()
        os._exit(3)
    if "FAKE_GARBAGE" in cmd:
        return "uncaught exception: this is not JSON"
    if "FAKE_GROW" in cmd:
        block = bytearray(int(os.environ.get("FAKE_REPL_GROW_MB", "400")) << 20)
        for k in range(0, len(block), 4096):  # touch every page so it is resident
            block[k] = 1
        _hoard.append(block)
        time.sleep(2.0)  # stay busy long enough for the memory watchdog to see it
    m = re.search(r"FAKE_SLOW_(\d+)", cmd)
    if m:
        time.sleep(int(m.group(1)) / 1000)
    return None


def main() -> None:
    transcript = os.environ.get("FAKE_REPL_TRANSCRIPT")
    responder = Transcript(transcript) if transcript else Rules(os.environ.get("FAKE_REPL_RULES"))
    log = os.environ.get("FAKE_REPL_LOG")
    while True:
        query = read_request(sys.stdin)
        if query is None:
            return
        if query.startswith("#") or query.startswith("--"):
            continue
        try:
            request = json.loads(query)
        except json.JSONDecodeError as e:  # the real REPL dies here too (uncaught exception)
            sys.stderr.write(f'uncaught exception: {{"message": "Could not parse JSON:\\n{e}"}}\n')
            sys.exit(1)
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"pid": os.getpid(), "request": request}, ensure_ascii=False) + "\n")
        delay_ms = float(os.environ.get("FAKE_REPL_DELAY_MS", "0"))
        if delay_ms and "cmd" in request:  # stands in for Lean's elaboration time (benchmarks)
            time.sleep(delay_ms / 1000)
        override = faults(request)
        write(override if override is not None else responder.answer(request))
        if "FAKE_CHATTER" in request.get("cmd", ""):
            write('{"env": 999}')


if __name__ == "__main__":
    main()
