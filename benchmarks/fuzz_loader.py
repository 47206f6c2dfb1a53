"""Fuzz the loader with mutated real files, each input in a worker subprocess.

    nice -n 19 .venv/bin/python benchmarks/fuzz_loader.py [--inputs 10000] [--workers 2]
        [--seed 15] [--out fuzz-out]

Seeds: the radiographs in ../shared/data (DICOM and a few NIH PNGs) and every file in
pydicom's own test data. Each input is a seed with one to three mutations (bit flips,
"interesting" bytes, truncation, chunk insertion or deletion, DICOM header values set to
extremes or garbage, codestream sizes inflated, JP2 box lengths zeroed, splices). A worker
process runs exactly what ``cxrview info --json`` and the viewer's loader do (``load_image``,
the info dict as JSON, ``render_display``) and reports the outcome; the parent kills it if an
input takes longer than ``--hang-s`` and samples its memory. Issue #15's bar:

* 0 hangs over 10 s, 0 processes over 1.5 GB resident,
* 0 untyped errors (an exception that is not an ``ImageLoadError`` subclass, or the bare
  base class wrapping an unexpected library error),
* valid JSON for every success, and every error message on one line.

Inputs that break a rule are written to ``--out`` with the seed's name, to reproduce them.
A benchmark, not a test: it takes ~15 minutes of CPU for 10,000 inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RSS_LIMIT = int(1.5 * 1024**3)
KILL_RSS = 3 * 1024**3  # the parent stops a worker here: past the bar already, and the machine is shared

# -- the worker ------------------------------------------------------------------------------------
WORKER = r'''
import io, json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # a safety net for the machine, far above the bar
from cxrview.core import ImageLoadError, load_image, render_display
from cxrview.cli.image import _info_dict, json_safe
for line in sys.stdin:
    path = line.strip()
    out = {"path": path}
    try:
        image = load_image(path)
        try:
            json.loads(json.dumps(json_safe(_info_dict(image)), allow_nan=False))
            out["outcome"] = "ok"
        except ValueError as exc:
            out["outcome"], out["message"] = "invalid_json", str(exc)
        render_display(image)
    except ImageLoadError as exc:
        out["outcome"] = type(exc).__name__
        out["message"] = str(exc)
        out["untyped"] = type(exc) is ImageLoadError  # the base class only wraps unexpected errors
    except BaseException as exc:
        out["outcome"] = "untyped:" + type(exc).__name__
        out["message"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        out["untyped"] = True
    out["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
'''


class Worker:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        self.started = time.monotonic()

    def run(self, path: Path, hang_s: float) -> tuple[dict | None, float, int]:
        """(result or None on a hang/crash, seconds, peak RSS sampled by the parent)."""
        import psutil

        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{path}\n".encode())
        self.proc.stdin.flush()
        start, peak = time.monotonic(), 0
        ps = psutil.Process(self.proc.pid)
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                pass
            if ready:
                line = self.proc.stdout.readline()
                elapsed = time.monotonic() - start
                if not line:
                    return None, elapsed, peak  # the worker died
                return json.loads(line), elapsed, peak
            elapsed = time.monotonic() - start
            if elapsed > hang_s or peak > KILL_RSS:
                return None, elapsed, peak

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# -- mutations -------------------------------------------------------------------------------------
INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE]
GARBAGE_TEXT = [b"nan", b"inf", b"-inf", b"abc", b"-1", b"0", b"1e308", b"\\\\", b"9" * 12]
# (group, element) of header values a file can lie about, little endian as they appear on disk.
HEADER_TAGS = [(0x0028, 0x0010), (0x0028, 0x0011), (0x0028, 0x0100), (0x0028, 0x0101), (0x0028, 0x0102),
               (0x0028, 0x0103), (0x0028, 0x0002), (0x0028, 0x0008), (0x0028, 0x1050), (0x0028, 0x1051),
               (0x0028, 0x1052), (0x0028, 0x1053), (0x0028, 0x0030), (0x0018, 0x1164), (0x0028, 0x0004),
               (0x0002, 0x0010), (0x2050, 0x0020), (0x0028, 0x3002), (0x0028, 0x0006)]


def _header_value(data: bytearray, rng: random.Random) -> bool:
    """Set one header element's value to an extreme (binary) or garbage (text) of the same length."""
    group, element = rng.choice(HEADER_TAGS)
    tag = group.to_bytes(2, "little") + element.to_bytes(2, "little")
    at = data.find(tag)
    if at < 0:
        return False
    vr = bytes(data[at + 4:at + 6])
    if vr.isalpha() and vr.isupper():  # explicit VR, short length
        length, value_at = int.from_bytes(data[at + 6:at + 8], "little"), at + 8
    else:
        length, value_at = int.from_bytes(data[at + 4:at + 8], "little"), at + 8
    if not 0 < length <= 64:
        return False
    if vr in (b"US", b"SS", b"UL") or (not vr.isalpha() and length in (2, 4)):
        value = rng.choice([b"\x00" * length, b"\xff" * length, b"\x01" + b"\x00" * (length - 1),
                            b"\x50\xc3" + b"\x00" * (length - 2)])
    else:
        value = rng.choice(GARBAGE_TEXT)[:length].ljust(length, b" ")
    data[value_at:value_at + length] = value
    return True


def _codestream_size(data: bytearray, rng: random.Random) -> bool:
    """Inflate the width/height in a JPEG SOF / JPEG-LS SOF55 / JPEG 2000 SIZ marker."""
    for marker in rng.sample([b"\xff\xc0", b"\xff\xc1", b"\xff\xc3", b"\xff\xf7", b"\xff\x51"], 5):
        at = data.find(marker)
        if at < 0:
            continue
        big = rng.choice([50000, 65535, 0, 1, 30000])
        if marker == b"\xff\x51":
            data[at + 6:at + 14] = (big.to_bytes(4, "big")) * 2
        else:
            data[at + 5:at + 9] = big.to_bytes(2, "big") * 2
        return True
    return False


def _jp2_box(data: bytearray, rng: random.Random) -> bool:
    for kind in rng.sample([b"jp2c", b"jp2h", b"ftyp", b"ihdr", b"colr"], 5):
        at = data.find(kind)
        if at >= 4:
            data[at - 4:at] = rng.choice([b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\xff\xff\xff\xff",
                                          b"\x00\x00\x00\x04"])
            return True
    return False


def mutate(seed: bytes, other: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    data = bytearray(seed)
    done: list[str] = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        kind = rng.choice(["flip", "flip", "byte", "truncate", "insert", "delete", "header", "header",
                           "header", "codestream", "codestream", "jp2", "splice"])
        if not data:
            break
        if kind == "flip":
            for _ in range(rng.randint(1, 16)):
                at = rng.randrange(len(data))
                data[at] ^= 1 << rng.randrange(8)
        elif kind == "byte":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.choice(INTERESTING)
        elif kind == "truncate":
            del data[rng.randrange(len(data)):]
        elif kind == "insert":
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.choice(INTERESTING) for _ in range(rng.randint(1, 512)))
        elif kind == "delete":
            at = rng.randrange(len(data))
            del data[at:at + rng.randint(1, 512)]
        elif kind == "header" and not _header_value(data, rng):
            continue
        elif kind == "codestream" and not _codestream_size(data, rng):
            continue
        elif kind == "jp2" and not _jp2_box(data, rng):
            continue
        elif kind == "splice":
            at = rng.randrange(len(data))
            start = rng.randrange(max(1, len(other)))
            data[at:] = other[start:start + len(data) - at]
        done.append(kind)
    return bytes(data), done


def seeds() -> list[Path]:
    import pydicom

    found = sorted((SHARED / "dicom").glob("*.dcm"))
    found += sorted((SHARED / "nih" / "images_256").glob("*.png"))[:4]
    corpus = Path(pydicom.__file__).parent / "data" / "test_files"
    found += sorted(p for p in corpus.rglob("*") if p.is_file() and p.stat().st_size < 4 << 20)
    return found


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    hangs: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    over_rss: list[str] = field(default_factory=list)
    untyped: list[str] = field(default_factory=list)
    multiline: list[str] = field(default_factory=list)
    max_rss: int = 0
    max_seconds: float = 0.0
    slowest: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _keep(out: Path, name: str, data: bytes) -> str:
    target = out / name
    target.write_bytes(data)
    return str(target)


def run_worker(jobs: list[int], args: argparse.Namespace, seed_files: list[Path], tally: Tally,
               tmp: Path, out: Path, progress: Counter[str]) -> None:
    cache = {p: p.read_bytes() for p in seed_files}
    worker = Worker()
    try:
        for index in jobs:
            rng = random.Random(args.seed * 1_000_003 + index)
            seed = rng.choice(seed_files)
            data, kinds = mutate(cache[seed], cache[rng.choice(seed_files)], rng)
            suffix = seed.suffix if seed.suffix else ".dcm"
            path = tmp / f"in{index}{suffix}"
            path.write_bytes(data)
            result, seconds, peak = worker.run(path, args.hang_s)
            label = f"{index:05d}-{seed.stem}-{'+'.join(kinds) or 'none'}{suffix}"
            with tally.lock:
                if seconds > tally.max_seconds:
                    tally.max_seconds, tally.slowest = seconds, label
                if result is None:
                    if seconds > args.hang_s:
                        tally.hangs.append(_keep(out, label, data))
                    elif peak > KILL_RSS:
                        tally.over_rss.append(_keep(out, label, data))
                    else:
                        tally.crashes.append(_keep(out, label, data))
                    tally.outcomes["hang/crash"] += 1
                else:
                    rss = max(int(result["maxrss"]), peak)
                    tally.max_rss = max(tally.max_rss, rss)
                    tally.outcomes[result["outcome"]] += 1
                    if rss > RSS_LIMIT:
                        tally.over_rss.append(_keep(out, label, data))
                    if result.get("untyped"):
                        tally.untyped.append(f"{_keep(out, label, data)}: {result['message'][:300]}")
                    message = result.get("message", "")
                    if "\n" in message:
                        tally.multiline.append(_keep(out, label, data))
                progress["done"] += 1
            path.unlink(missing_ok=True)
            if result is None or (result and int(result["maxrss"]) > RSS_LIMIT):
                worker.close()
                worker = Worker()  # a fresh high-water mark, and no stuck decoder
    finally:
        worker.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--hang-s", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"))
    parser.add_argument("--json", action="store_true", help="the summary as one JSON object")
    args = parser.parse_args()
    seed_files = seeds()
    args.out.mkdir(parents=True, exist_ok=True)
    tally, progress = Tally(), Counter[str]()
    start = time.monotonic()
    cpu_start = os.times()
    with tempfile.TemporaryDirectory(prefix="cxrview-fuzz-") as tmp:
        threads = [threading.Thread(target=run_worker, args=(
            list(range(w, args.inputs, args.workers)), args, seed_files, tally, Path(tmp), args.out,
            progress)) for w in range(args.workers)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(5)
            print(f"\r{progress['done']}/{args.inputs} inputs, {time.monotonic() - start:.0f} s",
                  end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    wall = time.monotonic() - start
    cpu = os.times()
    summary = {
        "inputs": args.inputs, "seeds": len(seed_files), "wall_s": round(wall, 1),
        "cpu_s_children": round(cpu.children_user + cpu.children_system
                                - cpu_start.children_user - cpu_start.children_system, 1),
        "hangs_over_s": {"limit": args.hang_s, "count": len(tally.hangs), "files": tally.hangs[:20]},
        "crashes": {"count": len(tally.crashes), "files": tally.crashes[:20]},
        "over_1_5_GB": {"count": len(tally.over_rss), "files": tally.over_rss[:20]},
        "max_rss_MB": round(tally.max_rss / 1e6, 1),
        "slowest_s": round(tally.max_seconds, 2), "slowest": tally.slowest,
        "untyped_errors": {"count": len(tally.untyped), "examples": tally.untyped[:20]},
        "multi_line_messages": len(tally.multiline),
        "outcomes": dict(tally.outcomes.most_common()),
        "invalid_json": tally.outcomes["invalid_json"],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:28s} {value}")
    bad = (len(tally.hangs) + len(tally.crashes) + len(tally.over_rss) + len(tally.untyped)
           + len(tally.multiline) + tally.outcomes["invalid_json"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
