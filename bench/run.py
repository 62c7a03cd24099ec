#!/usr/bin/env python3
"""Benchmark of pg_exclusive_backup against the server's own backup API.

    [PG_CONFIG=/path/to/pg_config] bench/run.py [--quick] [--no-install] [--preload]
                                               [--sections cycle,cheap,mem,status,archive,build]

Starts its own throwaway cluster (stopped and removed at the end, also on
failure or Ctrl-C), then measures

  1. cycle  pg_start_backup(l, true) + pg_stop_backup(false) in a database
            with the extension (A) against the server's pg_backup_start(l,
            true) + pg_backup_stop(false) in one without it (B), same
            cluster, pgbench writes (-T 1, scale 1) before every cycle, A
            and B alternating (AB BA AB ...); start and stop timed
            separately, client-side, over one persistent connection per
            database. Then the same without writes (the fixed cost), and
            where the time goes: the checkpoint as the server logs it, the
            extension's label file work replayed alone in the data
            directory, and a per-phase timeline of a few extra cycles from
            `perf trace -a` (kernel tracepoints; it also sees the worker the
            postmaster forks for pg_start_backup).
  2. cheap  pg_is_in_backup() and pg_backup_start_time() throughput with
            pgbench (-c 2 -j 2), with and without a backup running, against
            SELECT now() run alternately in the same round.
  3. mem    fresh backends evaluate each function 200000 times in one query
            (twice), with and without a backup running, next to the same
            query with now(): VmHWM/VmRSS/RssAnon of the backend and the sum
            of pg_backend_memory_contexts.total_bytes before and after; the
            time per call, the system calls per call (strace -c) and a CPU
            profile by library (perf record).
  status    pg_exclusive_backup_status(), as a collector polls it: pgbench
            throughput of SELECT * FROM the view against SELECT now()
            (alternating rounds), the time per call from one query that
            calls it 20000 times next to the same query with now(), and the
            growth of the backend's memory contexts over those calls; with
            and without a backup running, and after a stopped backup (the
            history filled in).
  4. archive  pg_stop_backup(true) with archiving on, against the server's
            pg_backup_start + pg_backup_stop(true), side by side (AB BA ...)
            on a cluster of its own, once with archive_command a plain cp
            and once with one that sleeps 0.3 s first: the stop's latency,
            the archiver's own time for the two files (from the stop call
            to the later .done in archive_status, the physical limit), and
            how long after that each stop returned.
  5. build  clean `make USE_PGXS=1` of a fresh git clone of this repository
            (HEAD, in a temp dir; the cargo registry cache is whatever this
            machine has, normally warm), the size of the stripped .so, and
            which code its symbols come from.

Every figure is median (min-max) over the repetitions; every ratio is taken
per round between runs made side by side. Standard library only. By
default the extension is first built and installed into PG_CONFIG's server
(as tools/test.sh does), so the benchmark measures the current source.
Default run time is about 3.5 minutes, --quick about 1 minute (more on a
busy machine: the header reports the load seen at start and end).
PEB_BENCH_KEEP=1 keeps the temp directory (server log, traces) for a look.
"""

import argparse
import datetime
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgwire import Conn  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_CONFIG = os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config")

FULL = dict(cycle_rounds=15, idle_rounds=10, write_secs=1, trace_cycles=3, file_reps=30,
            cheap_rounds=8, cheap_secs=2, mem_reps=3, mem_calls=200000, build_reps=3, archive_rounds=8)
QUICK = dict(cycle_rounds=5, idle_rounds=5, write_secs=1, trace_cycles=1, file_reps=20,
             cheap_rounds=2, cheap_secs=1, mem_reps=1, mem_calls=200000, build_reps=1, archive_rounds=3)

CHILDREN = []  # Popen objects started by us, killed on the way out


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout=120, check=True, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p


# ---------------------------------------------------------------- statistics

def med(v):
    return statistics.median(v)


def mmm(v, digits=2, scale=1.0):
    """median (min-max) of v, each multiplied by scale."""
    if not v:
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(med(v) * scale)} ({f.format(min(v) * scale)}–{f.format(max(v) * scale)})"


# ------------------------------------------------------------------- cluster

class Cluster:
    def __init__(self, bindir, extra_conf=""):
        self.bindir = bindir
        self.extra_conf = extra_conf
        self.tmp = tempfile.mkdtemp(prefix="peb-bench.")
        os.chmod(self.tmp, 0o755)
        self.as_server = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.as_server = ["runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.tmp, "data")
        self.logfile = os.path.join(self.tmp, "server.log")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.started = False

    def bin(self, name):
        return os.path.join(self.bindir, name)

    def start(self):
        run(self.as_server + [self.bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                              "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\n# peb bench\nport = {self.port}\nunix_socket_directories = '{self.tmp}'\n"
                    "listen_addresses = ''\nlog_checkpoints = on\n"
                    # No background work that would land in some rounds only.
                    "autovacuum = off\n" + self.extra_conf)
        self.started = True
        run(self.as_server + [self.bin("pg_ctl"), "-D", self.data, "-w", "-l", self.logfile, "start"], timeout=60)

    def stop(self):
        if self.started and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            p = run(self.as_server + [self.bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "20", "stop"],
                    timeout=40, check=False)
            if p.returncode != 0:
                run(self.as_server + [self.bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop"],
                    timeout=40, check=False)
        self.started = False

    def remove(self):
        if os.environ.get("PEB_BENCH_KEEP"):
            log(f"PEB_BENCH_KEEP is set: leaving {self.tmp}")
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def conn(self, db):
        return Conn(self.tmp, self.port, db)

    def client_args(self):
        return ["-h", self.tmp, "-p", str(self.port), "-U", "postgres"]

    def pgbench(self, args, db, timeout=120):
        p = run([self.bin("pgbench")] + self.client_args() + args + [db], timeout=timeout)
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout)
        return float(m.group(1)) if m else None

    def log_size(self):
        return os.path.getsize(self.logfile)

    def log_since(self, offset):
        with open(self.logfile, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon"):
                out[k] = int(v.split()[0])
    return out


CKPT_RE = re.compile(r"checkpoint complete: wrote (\d+) buffers.*?write=([0-9.]+) s, sync=([0-9.]+) s, "
                     r"total=([0-9.]+) s")


def checkpoints_in(text):
    """[(buffers, write_s, sync_s, total_s)] of the checkpoints logged in text."""
    return [(int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in CKPT_RE.finditer(text)]


# -------------------------------------------------------------------- strace

class Strace:
    """strace -c -w -f attached to one process; counts wall time per syscall."""

    def __init__(self, pid, outfile):
        self.out = outfile
        self.proc = None
        if not shutil.which("strace"):
            return
        self.proc = subprocess.Popen(["strace", "-c", "-w", "-f", "-o", outfile, "-p", str(pid)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        CHILDREN.append(self.proc)
        time.sleep(0.5)  # let it attach

    def finish(self):
        """{syscall: (seconds, calls, errors)}; {} if strace is not available."""
        if not self.proc:
            return {}
        time.sleep(0.2)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=20)
        CHILDREN.remove(self.proc)
        res = {}
        with open(self.out) as f:
            for line in f:
                parts = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(parts) >= 5 and re.match(r"^[0-9.]+$", parts[0]) and parts[-1] != "total":
                    calls = int(parts[3])
                    errors = int(parts[4]) if len(parts) == 6 else 0
                    res[parts[-1]] = (float(parts[1]), calls, errors)
        return res


# ------------------------------------------------------------ 1. backup cycle

def bench_cycle(cl, cfg, rows, notes):
    log("1. backup cycle")
    a = cl.conn("excl")
    b = cl.conn("nonexcl")
    calls = {
        "A": ("SELECT pg_start_backup('peb-bench', true)", "SELECT pg_stop_backup(false)", a),
        "B": ("SELECT pg_backup_start('peb-bench', true)", "SELECT pg_backup_stop(false)", b),
    }

    def writes():
        cl.pgbench(["-n", "-T", str(cfg["write_secs"]), "-c", "2", "-j", "2"], "bench")

    def cycle(which):
        start_sql, stop_sql, conn = calls[which]
        off = cl.log_size()
        t0 = time.perf_counter()
        conn.query(start_sql)
        t1 = time.perf_counter()
        conn.query(stop_sql)
        t2 = time.perf_counter()
        ck = checkpoints_in(cl.log_since(off))
        return t1 - t0, t2 - t1, ck

    def rounds(n, with_writes):
        res = {w: {"start": [], "stop": [], "total": [], "ckpt": [], "bufs": []} for w in "AB"}
        per_round = {"ratio": [], "dstart": [], "dstop": []}
        for r in range(n):
            this = {}
            for w in (("A", "B") if r % 2 == 0 else ("B", "A")):
                if with_writes:
                    writes()
                s, e, ck = cycle(w)
                res[w]["start"].append(s)
                res[w]["stop"].append(e)
                res[w]["total"].append(s + e)
                if len(ck) == 1:
                    res[w]["bufs"].append(ck[0][0])
                    res[w]["ckpt"].append(ck[0][3])
                this[w] = (s, e)
            per_round["ratio"].append(sum(this["A"]) / sum(this["B"]))
            per_round["dstart"].append(this["A"][0] - this["B"][0])
            per_round["dstop"].append(this["A"][1] - this["B"][1])
        return res, per_round

    # Warm-up: loads the library, fills caches; not counted.
    for w in ("A", "B", "A", "B"):
        writes()
        cycle(w)

    n = cfg["cycle_rounds"]
    res, pr = rounds(n, True)
    A, B = res["A"], res["B"]
    ok = med(pr["ratio"]) <= 1.05
    rows += [
        ("1", f"cycle A: pg_start_backup+pg_stop_backup (extension), ms; pgbench -T {cfg['write_secs']} "
              f"writes before each", mmm(A["total"], 1, 1e3), n, "", ""),
        ("1", "cycle B: pg_backup_start+pg_backup_stop (server), ms", mmm(B["total"], 1, 1e3), n, "", ""),
        ("1", "**ratio A/B per round (side by side)**", mmm(pr["ratio"], 3), n, "≤ 1.05", "yes" if ok else "**NO**"),
        ("1", "  ratio of the medians A/B", f"{med(A['total']) / med(B['total']):.3f}", "", "", ""),
        ("1", "  start A / start B, ms", f"{mmm(A['start'], 1, 1e3)} / {mmm(B['start'], 1, 1e3)}", n, "", ""),
        ("1", "  start A − start B per round, ms", mmm(pr["dstart"], 2, 1e3), n, "", ""),
        ("1", "  stop A / stop B, ms", f"{mmm(A['stop'], 1, 1e3)} / {mmm(B['stop'], 1, 1e3)}", n, "", ""),
        ("1", "  stop A − stop B per round, ms", mmm(pr["dstop"], 2, 1e3), n, "", ""),
        ("1", "  checkpoint inside start A / B (server log 'total'), ms",
         f"{mmm(A['ckpt'], 0, 1e3)} / {mmm(B['ckpt'], 0, 1e3)}", n, "", ""),
        ("1", "  buffers that checkpoint wrote, A / B", f"{mmm(A['bufs'], 0)} / {mmm(B['bufs'], 0)}", n, "", ""),
    ]

    # Fixed cost: the same cycles with nothing to checkpoint.
    ni = cfg["idle_rounds"]
    ires, ipr = rounds(ni, False)
    rows += [
        ("1", "idle cycles (no writes, near-empty checkpoint): cycle A / B, ms",
         f"{mmm(ires['A']['total'], 2, 1e3)} / {mmm(ires['B']['total'], 2, 1e3)}", ni, "", ""),
        ("1", "  idle: start A − start B / stop A − stop B per round, ms",
         f"{mmm(ipr['dstart'], 2, 1e3)} / {mmm(ipr['dstop'], 2, 1e3)}", ni, "", ""),
    ]

    # The extension's own file work, replayed alone in the data directory
    # with the same system calls (see src/files.rs, src/sql.rs, src/worker.rs).
    fw = file_work(cl.data, cfg["file_reps"])
    fw_total = [x[0] + x[1] for x in fw]
    rows += [
        ("1", "extension's label file work per cycle, replayed alone (4 fsyncs), ms", mmm(fw_total, 2, 1e3),
         cfg["file_reps"], "", ""),
        ("1", "  of which start (write+fsync+link+unlink+fsync dir) / stop (rename+fsync dir+unlink+fsync dir), ms",
         f"{mmm([x[0] for x in fw], 2, 1e3)} / {mmm([x[1] for x in fw], 2, 1e3)}", "", "", ""),
        ("1", "  shares of cycle A (medians): checkpoint / file work (replayed) / rest",
         f"{100 * med(A['ckpt']) / med(A['total']):.0f} % / {100 * med(fw_total) / med(A['total']):.1f} % / "
         f"{100 - 100 * (med(A['ckpt']) + med(fw_total)) / med(A['total']):.0f} %" if A["ckpt"] else "n/a",
         "", "", ""),
    ]

    # Where the time of one cycle goes, from system-call timestamps.
    if shutil.which("perf"):
        try:
            trace_cycles(cl, cfg, a, b, calls, writes, rows, notes)
        except Exception as e:  # a breakdown is a bonus; never lose the figures for it
            notes.append(f"perf trace breakdown failed: {e!r}")
    else:
        notes.append("perf not installed (apt-get install linux-perf): no per-phase breakdown of the cycle.")
    a.close()
    b.close()


PERF_LINE = re.compile(r"^\s*([0-9.]+|\?)\s+\(\s*(?:([0-9.]+) ms)?\s*\):\s+(\S+)/(\d+)\s+(.*)$")


def parse_perf_trace(path, pids):
    """Events of `perf trace -T` output for `pids` (a set, grown by the
    forks of its members): dicts pid, t, end (ms), name, text."""
    events, pending = [], {}
    with open(path, errors="replace") as f:
        for line in f:
            m = PERF_LINE.match(line.rstrip("\n"))
            if not m or m.group(1) == "?":
                continue
            pid = int(m.group(4))
            if pid not in pids:
                continue
            t = float(m.group(1))
            dur = float(m.group(2)) if m.group(2) else None
            rest = m.group(5)
            c = re.match(r"\.\.\. \[continued\]: (\w+)\(\)\)\s*(.*)", rest)
            if c:
                ev = pending.pop((pid, c.group(1)), None)
                if ev is not None and dur is not None:
                    ev["end"] = ev["t"] + dur
                    ev["text"] += " " + c.group(2)
                continue
            mm = re.match(r"([\w:]+)\(", rest)
            if not mm:
                continue
            ev = dict(pid=pid, t=t, end=t + (dur or 0.0), name=mm.group(1), text=rest)
            if ev["name"] == "sched:sched_process_fork":
                child = re.search(r"child_pid: (\d+)", rest)
                if child:
                    ev["child"] = int(child.group(1))
                    pids.add(ev["child"])
            events.append(ev)
            if dur is None and rest.rstrip().endswith("..."):
                pending[(pid, ev["name"])] = ev
    events.sort(key=lambda e: e["t"])
    return events


def trace_cycles(cl, cfg, a, b, calls, writes, rows, notes):
    """Runs a few more (untimed) cycles of A and B under `perf trace -a`
    (kernel tracepoints: little overhead, and it sees the worker that the
    postmaster forks), then splits each start into phases by the system
    calls of the caller, the postmaster and the worker."""
    pm = int(open(os.path.join(cl.data, "postmaster.pid")).readline())
    ckpt = int(a.value("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))
    out = os.path.join(cl.tmp, "perf-trace.txt")
    p = subprocess.Popen(["perf", "trace", "-a", "-T", "-o", out,
                          "-e", "recvfrom,sendto,kill,openat,fsync,fdatasync,linkat,rename,unlink,exit_group",
                          "-e", "sched:sched_process_fork,sched:sched_process_exit"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    CHILDREN.append(p)
    time.sleep(3)  # perf trace -a takes a moment to set up
    if p.poll() is not None:
        CHILDREN.remove(p)
        notes.append("perf trace did not start: no per-phase breakdown of the cycle.")
        return
    for _ in range(cfg["trace_cycles"]):
        for w in "AB":
            start_sql, stop_sql, conn = calls[w]
            writes()
            conn.query(start_sql)
            conn.query(stop_sql)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    CHILDREN.remove(p)

    ev = parse_perf_trace(out, {pm, a.pid, b.pid})
    phases = {"A": {}, "B": {}}

    def add(w, k, v):
        phases[w].setdefault(k, []).append(v)

    def first(pred, after):
        return next(e for e in ev if e["t"] >= after and pred(e))

    for w, conn in (("A", a), ("B", b)):
        queries = [e for e in ev if e["pid"] == conn.pid and e["name"] == "recvfrom"
                   and re.search(r"= [1-9]\d*\s*$", e["text"])]
        for q0, s0 in zip(queries[0::2], queries[1::2]):
            q1 = first(lambda e: e["pid"] == conn.pid and e["name"] == "sendto", q0["t"])
            s1 = first(lambda e: e["pid"] == conn.pid and e["name"] == "sendto", s0["t"])
            add(w, "start", q1["end"] - q0["t"])
            add(w, "stop", s1["end"] - s0["t"])
            if w == "A":
                k = first(lambda e: e["pid"] == conn.pid and e["name"] == "kill" and f"pid: {pm} " in e["text"],
                          q0["t"])
                fork = first(lambda e: e["pid"] == pm and e["name"] == "sched:sched_process_fork", k["t"])
                wpid = fork["child"]
                wal = first(lambda e: e["pid"] == wpid and e["name"] == "openat" and "flags: RDWR)" in e["text"],
                            fork["t"])
                ck = first(lambda e: e["pid"] == wpid and e["name"] == "kill" and f"pid: {ckpt} " in e["text"],
                           fork["t"])
                tbl = first(lambda e: e["pid"] == wpid and e["name"] == "openat" and "DIRECTORY" in e["text"],
                            ck["t"])
                wexit = first(lambda e: e["pid"] == wpid and e["name"] in ("sched:sched_process_exit", "exit_group"),
                              tbl["t"])
                files = [e for e in ev if e["pid"] == wpid and tbl["t"] <= e["t"] < wexit["t"]]
                fend = max(e["end"] for e in files)
                add(w, "a. caller: checks, request in shared memory, signal to postmaster", k["t"] - q0["t"])
                add(w, "b. postmaster forks the worker", fork["t"] - k["t"])
                add(w, "c. worker start-up (load library, attach request)", wal["t"] - fork["t"])
                add(w, "d. WAL switch, until the checkpoint request", ck["t"] - wal["t"])
                add(w, "e. checkpoint", tbl["t"] - ck["t"])
                add(w, "f. label file (write, fsync, link, fsync dir)", fend - tbl["t"])
                add(w, "g. worker exits", wexit["t"] - fend)
                add(w, "h. postmaster reaps it, notifies caller; reply", q1["end"] - wexit["t"])
                fsyncs = [e for e in ev if e["pid"] == conn.pid and e["name"] == "fsync" and s0["t"] < e["t"] < s1["t"]]
                if len(fsyncs) >= 2:
                    add(w, "stop: label file work (read, rename, fsync dir, unlink, fsync dir)",
                        fsyncs[1]["end"] - s0["t"])
            else:
                ck = first(lambda e: e["pid"] == conn.pid and e["name"] == "kill" and f"pid: {ckpt} " in e["text"],
                           q0["t"])
                tbl = first(lambda e: e["pid"] == conn.pid and e["name"] == "openat" and "DIRECTORY" in e["text"],
                            ck["t"])
                add(w, "a-d. WAL switch, until the checkpoint request", ck["t"] - q0["t"])
                add(w, "e. checkpoint", tbl["t"] - ck["t"])
                add(w, "f-h. rest of do_pg_backup_start; reply", q1["end"] - tbl["t"])
    k = len(phases["A"].get("start", []))
    rows.append(("1", "perf trace (kernel tracepoints, little overhead): start A / start B, ms",
                 f"{mmm(phases['A']['start'], 2)} / {mmm(phases['B']['start'], 2)}", k, "", ""))
    for w in "AB":
        for name in sorted(x for x in phases[w] if x[0] in "abcdefgh"):
            rows.append(("1", f"  start {w}: {name}, ms", mmm(phases[w][name], 2), len(phases[w][name]), "", ""))
    rows.append(("1", "perf trace: stop A / stop B, ms",
                 f"{mmm(phases['A']['stop'], 2)} / {mmm(phases['B']['stop'], 2)}", k, "", ""))
    lf = phases["A"].get("stop: label file work (read, rename, fsync dir, unlink, fsync dir)")
    if lf:
        rows.append(("1", "  stop A: label file work (read, rename, fsync dir, unlink, fsync dir), ms", mmm(lf, 2),
                     len(lf), "", ""))


def file_work(datadir, reps):
    """Replays, in datadir, the system calls the extension makes on
    backup_label and tablespace_map in one start and one stop (no
    tablespaces, so tablespace_map is only unlinked, ENOENT). Returns
    [(start_s, stop_s)]."""
    lbl = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n" \
          b"CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n" \
          b"START TIME: 2024-01-01 00:00:00 UTC\nLABEL: peb-bench\nSTART TIMELINE: 1\n"
    name = os.path.join(datadir, "peb_bench_label")
    tmp = name + f".tmp.{os.getpid()}"
    claimed = name + f".stopping.{os.getpid()}"
    tsmap = os.path.join(datadir, "peb_bench_tablespace_map")

    def fsync_dir():
        fd = os.open(datadir, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)

    def unlink_missing(p):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass

    def read(p):
        with open(p, "rb") as f:
            return f.read(65537)

    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        # start: exists check, write_tmp, link, unlink tmp, fsync dir, remove map
        try:
            os.lstat(name)  # exists()
        except FileNotFoundError:
            pass
        unlink_missing(tmp)
        os.stat(datadir)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.write(fd, lbl)
        os.fsync(fd)
        os.close(fd)
        os.link(tmp, name)
        os.unlink(tmp)
        fsync_dir()
        unlink_missing(tsmap)
        t1 = time.perf_counter()
        # stop: read label, rename+fsync dir, read claimed, remove map, remove claimed+fsync dir
        read(name)
        os.rename(name, claimed)
        fsync_dir()
        read(claimed)
        unlink_missing(tsmap)
        os.unlink(claimed)
        fsync_dir()
        t2 = time.perf_counter()
        out.append((t1 - t0, t2 - t1))
    return out


# ------------------------------------------------------------- 2. cheap calls

def bench_cheap(cl, cfg, rows, notes):
    log("2. cheap calls")
    scripts = {
        "now()": "SELECT now();\n",
        "pg_is_in_backup()": "SELECT pg_is_in_backup();\n",
        "pg_backup_start_time()": "SELECT pg_backup_start_time();\n",
    }
    paths = {}
    for i, (k, sql) in enumerate(scripts.items()):
        paths[k] = os.path.join(cl.tmp, f"cheap{i}.sql")
        with open(paths[k], "w") as f:
            f.write(sql)
    ctl = cl.conn("excl")

    def bench(k, secs):
        return cl.pgbench(["-n", "-f", paths[k], "-c", "2", "-j", "2", "-T", str(secs)], "excl")

    for cond in ("no backup", "during backup"):
        if cond == "during backup":
            ctl.query("SELECT pg_start_backup('peb-bench-cheap', true)")
        check = ctl.query("SELECT pg_is_in_backup(), pg_backup_start_time() IS NOT NULL")[0]
        expect = "t" if cond == "during backup" else "f"
        if check != [expect, expect]:
            raise RuntimeError(f"{cond}: pg_is_in_backup/pg_backup_start_time say {check}")
        bench("now()", 1)  # warm-up
        tps = {k: [] for k in scripts}
        ratio = {k: [] for k in scripts if k != "now()"}
        keys = list(scripts)
        for r in range(cfg["cheap_rounds"]):
            this = {}
            for k in (keys if r % 2 == 0 else keys[::-1]):
                this[k] = bench(k, cfg["cheap_secs"])
                tps[k].append(this[k])
            for k in ratio:
                ratio[k].append(this[k] / this["now()"])
        n = cfg["cheap_rounds"]
        rows.append(("2", f"SELECT now(), {cond}: tps (-c 2 -j 2, {cfg['cheap_secs']} s runs)",
                     mmm(tps["now()"], 0), n, "", ""))
        for k in ratio:
            rows.append(("2", f"{k}, {cond}: tps (ratio of the medians {med(tps[k]) / med(tps['now()']):.3f})",
                         mmm(tps[k], 0), n, "", ""))
            rows.append(("2", f"  {k}, {cond}: ratio to now() per round", mmm(ratio[k], 3), n, "≥ 0.97",
                         "yes" if med(ratio[k]) >= 0.97 else "NO"))
        if cond == "during backup":
            ctl.query("SELECT pg_stop_backup(false)")
    ctl.close()


# ------------------------------------------------------------ status view

def bench_status(cl, cfg, rows, notes):
    log("status view")
    scripts = {"now()": "SELECT now();\n", "status view": "SELECT * FROM pg_exclusive_backup_status;\n"}
    paths = {}
    for i, (k, sql) in enumerate(scripts.items()):
        paths[k] = os.path.join(cl.tmp, f"status{i}.sql")
        with open(paths[k], "w") as f:
            f.write(sql)
    ctl = cl.conn("excl")
    n = 20000
    ctx_sql = "SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts"
    for cond in ("nothing recorded", "during backup", "after a stop"):
        if cond == "during backup":
            ctl.query("SELECT pg_start_backup('peb-bench-status', true)")
        if cond == "after a stop":
            ctl.query("SELECT pg_stop_backup(false)")
        if cond == "nothing recorded":
            path = os.path.join(cl.data, "pg_exclusive_backup.state")
            if os.path.exists(path):
                os.unlink(path)
        tps = {k: [] for k in scripts}
        ratio = []
        for r in range(cfg["cheap_rounds"]):
            this = {}
            for k in (list(scripts) if r % 2 == 0 else list(scripts)[::-1]):
                this[k] = cl.pgbench(["-n", "-f", paths[k], "-c", "2", "-j", "2", "-T", str(cfg["cheap_secs"])],
                                     "excl")
                tps[k].append(this[k])
            ratio.append(this["status view"] / this["now()"])
        rows.append(("S", f"SELECT * FROM pg_exclusive_backup_status, {cond}: tps (-c 2 -j 2) / now()'s",
                     f"{mmm(tps['status view'], 0)} / {mmm(tps['now()'], 0)}", cfg["cheap_rounds"], "", ""))
        rows.append(("S", f"  ratio to now() per round", mmm(ratio, 3), cfg["cheap_rounds"], "", ""))
        c = cl.conn("excl")
        c.query("SELECT count(*) FROM pg_exclusive_backup_status")
        percall = {}
        for fn, expr in (("now()", "now()"), ("status", "(pg_exclusive_backup_status()).in_progress")):
            times = []
            for _ in range(cfg["mem_reps"]):
                t0 = time.perf_counter()
                c.query(f"SELECT count({expr}) FROM generate_series(1, {n})")
                times.append((time.perf_counter() - t0) / n * 1e6)
            percall[fn] = times
        ctx0 = int(c.value(ctx_sql))
        c.query(f"SELECT count((pg_exclusive_backup_status()).in_progress) FROM generate_series(1, {n})")
        ctx1 = int(c.value(ctx_sql))
        c.close()
        extra = [a - b for a, b in zip(percall["status"], percall["now()"])]
        rows.append(("S", f"  µs per call beyond now() ({n} calls in one query)", mmm(extra, 1),
                     cfg["mem_reps"], "", ""))
        rows.append(("S", f"  memory-context growth over {n} calls, bytes", str(ctx1 - ctx0), 1, "0", 
                     "yes" if ctx1 - ctx0 <= 8192 else "NO"))
    ctl.close()


# ------------------------------------------------------------------ 3. memory

def bench_mem(cl, cfg, rows, notes):
    log("3. memory")
    n = cfg["mem_calls"]
    ctl = cl.conn("excl")
    ctx_sql = "SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts"
    percall = {}
    for cond in ("no backup", "during backup"):
        if cond == "during backup":
            ctl.query("SELECT pg_start_backup('peb-bench-mem', true)")
        base = None
        for fn in ("now()", "pg_is_in_backup()", "pg_backup_start_time()"):
            q = f"SELECT count({fn}) FROM generate_series(1, {n})"
            g = {"hwm": [], "rss": [], "ctx": [], "ctx2": [], "rss2": [], "hwm2": [], "anon": [], "anon2": []}
            times = []
            first = None
            for _ in range(cfg["mem_reps"]):
                c = cl.conn("excl")  # a fresh backend each time
                c.query(f"SELECT count({fn}) FROM generate_series(1, 10)")  # loads the library, fills caches
                c.query(ctx_sql)
                ctx0 = int(c.value(ctx_sql))
                st0 = proc_status(c.pid)
                t0 = time.perf_counter()
                cnt = int(c.value(q))
                t1 = time.perf_counter()
                ctx1 = int(c.value(ctx_sql))
                st1 = proc_status(c.pid)
                c.query(q)
                ctx2 = int(c.value(ctx_sql))
                st2 = proc_status(c.pid)
                c.close()
                want = 0 if (fn == "pg_backup_start_time()" and cond == "no backup") else n
                if cnt != want:
                    raise RuntimeError(f"{q} {cond}: count {cnt}, expected {want}")
                g["hwm"].append(st1["VmHWM"] - st0["VmHWM"])
                g["hwm2"].append(st2["VmHWM"] - st1["VmHWM"])
                g["rss"].append(st1["VmRSS"] - st0["VmRSS"])
                g["rss2"].append(st2["VmRSS"] - st1["VmRSS"])
                g["anon"].append(st1["RssAnon"] - st0["RssAnon"])
                g["anon2"].append(st2["RssAnon"] - st1["RssAnon"])
                g["ctx"].append(ctx1 - ctx0)
                g["ctx2"].append(ctx2 - ctx1)
                if first is None:
                    first = (st0, st1, st2, ctx0)
                times.append(t1 - t0)
            percall[(cond, fn)] = times
            reps = cfg["mem_reps"]
            st0, st1, st2, ctx0 = first
            ok = fn == "now()" or max(map(abs, g["ctx"] + g["ctx2"])) <= 8192
            label = fn if fn != "now()" else "now() (baseline: same query shape)"
            rows.append(("3", f"{label}, {cond}: VmHWM kB before → after run 1 → after run 2 (first backend)",
                         f"{st0['VmHWM']} → {st1['VmHWM']} → {st2['VmHWM']}", "", "", ""))
            rows.append(("3", f"  VmRSS kB before → after run 1 → after run 2 (first backend)",
                         f"{st0['VmRSS']} → {st1['VmRSS']} → {st2['VmRSS']}", "", "", ""))
            if fn == "now()":
                base = g
                verdict = ""
            else:
                # Beyond noise: more than 256 kB above what the same query
                # with now() grows by.
                worse = max(med(g[k]) - med(base[k]) for k in ("hwm", "hwm2", "rss", "rss2", "anon", "anon2"))
                verdict = "yes" if worse <= 256 else "**NO**"
            rows.append(("3", f"  growth run 1 / run 2: VmHWM kB; VmRSS kB; RssAnon kB",
                         f"{mmm(g['hwm'], 0)} / {mmm(g['hwm2'], 0)}; {mmm(g['rss'], 0)} / {mmm(g['rss2'], 0)}; "
                         f"{mmm(g['anon'], 0)} / {mmm(g['anon2'], 0)}",
                         reps, "as now()" if fn != "now()" else "", verdict))
            rows.append(("3", f"  memory contexts: total_bytes before {ctx0}; growth run 1 / run 2, bytes",
                         f"{mmm(g['ctx'], 0)} / {mmm(g['ctx2'], 0)}", reps, "0" if fn != "now()" else "",
                         ("yes" if ok else "**NO**") if fn != "now()" else ""))
        if cond == "during backup":
            ctl.query("SELECT pg_stop_backup(false)")
    for cond in ("no backup", "during backup"):
        base = med(percall[(cond, "now()")])
        for fn in ("pg_is_in_backup()", "pg_backup_start_time()"):
            t = percall[(cond, fn)]
            rows.append(("3", f"time per call of {fn}, {cond}, µs (query time / {n}, minus the same for now())",
                         mmm([(x - base) / n for x in t], 2, 1e6), len(t), "", ""))

    # System calls per call (strace -c on one backend, 5000 calls).
    k = 5000
    for cond in ("no backup", "during backup"):
        if cond == "during backup":
            ctl.query("SELECT pg_start_backup('peb-bench-strace', true)")
        for fn in ("pg_is_in_backup()", "pg_backup_start_time()"):
            c = cl.conn("excl")
            c.query(f"SELECT count({fn}) FROM generate_series(1, 10)")
            st = Strace(c.pid, os.path.join(cl.tmp, "strace-call.txt"))
            c.query(f"SELECT count({fn}) FROM generate_series(1, {k})")
            calls = st.finish()
            c.close()
            if calls:
                per = ", ".join(f"{s} {v[1] / k:.2f}" + (f" ({v[2] / k:.2f} failed)" if v[2] else "")
                                for s, v in sorted(calls.items(), key=lambda kv: -kv[1][1]) if v[1] >= k / 2)
                rows.append(("3", f"syscalls per {fn}, {cond} (strace -c)", per or "none", k, "", ""))
        if cond == "during backup":
            ctl.query("SELECT pg_stop_backup(false)")

    # Where a call's CPU time goes: perf record (cpu-clock samples) of one
    # backend running pg_is_in_backup() during a backup.
    if shutil.which("perf"):
        ctl.query("SELECT pg_start_backup('peb-bench-perf', true)")
        c = cl.conn("excl")
        c.query("SELECT count(pg_is_in_backup()) FROM generate_series(1, 10)")
        out = os.path.join(cl.tmp, "perf-call.data")
        p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", out, "-p", str(c.pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        CHILDREN.append(p)
        time.sleep(1)
        c.query("SELECT count(pg_is_in_backup()) FROM generate_series(1, 300000)")
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        CHILDREN.remove(p)
        c.close()
        ctl.query("SELECT pg_stop_backup(false)")
        r = run(["perf", "report", "-i", out, "--stdio", "--sort", "dso"], check=False)
        shares = []
        for line in r.stdout.splitlines():
            m = re.match(r"\s*([0-9.]+)%\s+(.+?)\s*$", line)
            if m and float(m.group(1)) >= 1:
                shares.append(f"{m.group(2).replace(' (deleted)', '')} {float(m.group(1)):.0f} %")
        if shares:
            rows.append(("3", "CPU profile of pg_is_in_backup() during a backup (perf record, by DSO; "
                              "the query's own generate_series/count is the 'postgres' part)",
                         ", ".join(shares), "", "", ""))
    ctl.close()


# ----------------------------------------------------------------- 4. archive

def bench_archive(bindir, cfg, rows, notes):
    log("4. stop with archiving")
    for name, prefix in (("plain cp", ""), ("sleep 0.3 + cp", "sleep 0.3 && ")):
        cl = Cluster(bindir)
        arch = os.path.join(cl.tmp, "archive")
        cl.extra_conf = f"archive_mode = on\narchive_command = '{prefix}cp %p {arch}/%f'\n"
        os.mkdir(arch)
        if cl.as_server:
            pw = pwd.getpwnam("postgres")
            os.chown(arch, pw.pw_uid, pw.pw_gid)
        try:
            cl.start()
            c = cl.conn("postgres")
            c.query("CREATE DATABASE excl")
            c.close()
            a = cl.conn("excl")
            a.query("CREATE EXTENSION pg_exclusive_backup")
            b = cl.conn("postgres")
            status = os.path.join(cl.data, "pg_wal", "archive_status")

            def files(conn, start, stop):
                last = conn.value(f"SELECT pg_walfile_name('{stop}'::pg_lsn - 1)")
                f, off = conn.query(f"SELECT file_name, file_offset FROM pg_walfile_name_offset('{start}')")[0]
                return last, f"{f}.{int(off):08X}.backup"

            def done_ns(name):
                return os.stat(os.path.join(status, name + ".done")).st_ctime_ns

            lat = {"A": [], "B": []}
            limit = {"A": [], "B": []}
            after = {"A": [], "B": []}
            ratio = []
            for r in range(cfg["archive_rounds"] + 1):
                this = {}
                for who in ("AB" if r % 2 == 0 else "BA"):
                    conn = a if who == "A" else b
                    if who == "A":
                        start = conn.value("SELECT pg_start_backup('peb-bench-archive', true)")
                        t0, w0 = time.perf_counter(), time.time_ns()
                        stop = conn.value("SELECT pg_stop_backup(true)")
                    else:
                        start = conn.value("SELECT pg_backup_start('peb-bench-archive', true)")
                        t0, w0 = time.perf_counter(), time.time_ns()
                        stop = conn.value("SELECT lsn FROM pg_backup_stop(true)")
                    t1, w1 = time.perf_counter(), time.time_ns()
                    last, hist = files(conn, start, stop)
                    done = max(done_ns(last), done_ns(hist))
                    if r == 0:
                        continue  # warm-up round
                    this[who] = (t1 - t0) * 1000
                    lat[who].append(this[who])
                    limit[who].append((done - w0) / 1e6)
                    after[who].append((w1 - done) / 1e6)
                if r > 0:
                    ratio.append(this["A"] / this["B"])
            n = cfg["archive_rounds"]
            rows.append(("4", f"stop with archiving ({name}): pg_stop_backup(true) A / pg_backup_stop(true) B, ms",
                         f"{mmm(lat['A'])} / {mmm(lat['B'])}", n, "", ""))
            target = "≤ 0.2" if prefix == "" else ""
            met = ("yes" if med(ratio) <= 0.2 else "NO") if prefix == "" else ""
            rows.append(("4", f"  **ratio A/B per round ({name})**", mmm(ratio, 3), n, target, met))
            rows.append(("4", f"  archiver's own time for the two files, during A / B, ms (the limit)",
                         f"{mmm(limit['A'])} / {mmm(limit['B'])}", n, "", ""))
            rows.append(("4", f"  stop returned after the archiver finished, A / B, ms",
                         f"{mmm(after['A'])} / {mmm(after['B'])}", n, "≤ 20 (A)" if prefix else "",
                         ("yes" if med(after["A"]) <= 20 else "NO") if prefix else ""))
            a.close()
            b.close()
        finally:
            cl.stop()
            cl.remove()
    notes.append("4: archive_command copies into a directory beside the cluster; fsync on; the archiver "
                 "wakes at once when a segment is ready, so the two files' own time is the limit")


# ------------------------------------------------------------------- 5. build

def so_breakdown(so):
    """Bytes of code+data symbols of the unstripped library, by origin."""
    p = run(["nm", "-S", "--size-sort", "-C", so], check=False)
    groups = {}
    order = [("std backtrace symbolizer (gimli, addr2line, miniz_oxide, rustc_demangle, backtrace_rs)",
              ("gimli", "addr2line", "miniz_oxide", "rustc_demangle", "backtrace_rs", "std::backtrace",
               "symbolize", "<std::sys::backtrace", "std::sys::backtrace")),
             ("this crate (pg_exclusive_backup::)", ("pg_exclusive_backup::",)),
             ("rest of std/core/alloc (fmt, panics, io, sort, ...)", ("",))]
    for line in p.stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        size = int(parts[1], 16)
        for label, keys in order:
            if any(k in parts[3] for k in keys):
                groups[label] = groups.get(label, 0) + size
                break
    return groups


def bench_build(cfg, rows, notes, pg_config):
    log("5. build")
    times, sizes, unstripped = [], [], []
    head = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "csrc", "build.rs", "Cargo.toml",
                 "Cargo.lock", "Makefile", "pg_exclusive_backup--1.0.sql"]).stdout.strip()
    reg = os.path.expanduser("~/.cargo/registry")
    groups = {}
    for i in range(cfg["build_reps"]):
        d = tempfile.mkdtemp(prefix="peb-bench-build.")
        try:
            run(["git", "clone", "-q", REPO, os.path.join(d, "src")], timeout=120)
            src = os.path.join(d, "src")
            env = dict(os.environ)
            cargo_bin = os.path.expanduser("~/.cargo/bin")
            if os.path.isdir(cargo_bin):
                env["PATH"] = cargo_bin + ":" + env["PATH"]
            # Dependencies come from the local registry cache; without
            # network access cargo would otherwise try to refresh its index.
            env.setdefault("CARGO_NET_OFFLINE", "1")
            t0 = time.perf_counter()
            p = run(["make", "-s", "USE_PGXS=1", f"PG_CONFIG={pg_config}"], cwd=src, env=env, timeout=600,
                    check=False)
            t1 = time.perf_counter()
            if p.returncode != 0 and env.get("CARGO_NET_OFFLINE") == "1":
                notes.append("build: the offline build failed, so it was retried with network access "
                             "(the registry cache was not warm)")
                run(["rm", "-rf", os.path.join(src, "target")])
                env.pop("CARGO_NET_OFFLINE")
                t0 = time.perf_counter()
                p = run(["make", "-s", "USE_PGXS=1", f"PG_CONFIG={pg_config}"], cwd=src, env=env, timeout=600)
                t1 = time.perf_counter()
            elif p.returncode != 0:
                raise RuntimeError(f"build failed:\n{p.stdout}{p.stderr}")
            so = os.path.join(src, "pg_exclusive_backup.so")
            stripped = os.path.join(d, "stripped.so")
            run(["strip", "-o", stripped, so])
            times.append(t1 - t0)
            sizes.append(os.path.getsize(stripped))
            unstripped.append(os.path.getsize(so))
            if i == 0:
                groups = so_breakdown(so)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    n = cfg["build_reps"]
    rows.append(("5", f"clean `make USE_PGXS=1` of a fresh clone of HEAD {head}, wall s", mmm(times, 1), n,
                 "≤ 20 s", "yes" if med(times) <= 20 else "NO"))
    kb = [s / 1000 for s in sizes]
    rows.append(("5", "stripped .so size, kB (1000 B) / KiB",
                 f"{mmm(kb, 1)} / {med(sizes) / 1024:.1f} KiB ({med(sizes)} B)", n, "≤ 300 KB",
                 "yes" if med(sizes) <= 300 * 1000 else ("NO" if med(sizes) > 300 * 1024 else "yes (KiB) / NO (kB)")))
    rows.append(("5", "unstripped .so size, kB", mmm([s / 1000 for s in unstripped], 1), n, "", ""))
    for label, size in sorted(groups.items(), key=lambda kv: -kv[1]):
        rows.append(("5", f"  symbols: {label}, kB", f"{size / 1000:.1f}", "", "", ""))
    notes.append(f"build: cargo registry cache at {reg} {'present (warm)' if os.path.isdir(reg) else 'absent'}; "
                 f"cargo ran with CARGO_NET_OFFLINE={os.environ.get('CARGO_NET_OFFLINE', '1')}; "
                 f"target dir inside the clone, so nothing of the repository's target/ is reused.")
    if dirty:
        notes.append("build: the working tree has uncommitted changes to the sources; the clone builds HEAD "
                     "without them:\n    " + dirty.replace("\n", "\n    "))


# --------------------------------------------------------------------- main

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, " \
           f"{mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()} {platform.release()}"


def activity():
    """What else this machine is doing: load average and other busy programs."""
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    others = {"postgres (other clusters)": 0, "cargo/rustc": 0}
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if comm in ("cargo", "rustc"):
            others["cargo/rustc"] += 1
        elif comm == "postgres":
            try:
                with open(f"/proc/{ppid}/stat") as f:
                    pst = f.read()
                if pst[pst.index("(") + 1:pst.rindex(")")] != "postgres":
                    others["postgres (other clusters)"] += 1  # a postmaster
            except OSError:
                pass
    return f"load average {load}; running: " + ", ".join(f"{v} {k}" for k, v in others.items())


def print_table(rows):
    head = ("#", "measurement", "median (min–max)", "n", "target", "met")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 1 minute instead of about 3.5")
    ap.add_argument("--no-install", action="store_true",
                    help="do not build and install the extension first; use what is installed")
    ap.add_argument("--sections", default="cycle,cheap,mem,status,archive,build")
    ap.add_argument("--preload", action="store_true",
                    help="run sections 1-3 with the library in shared_preload_libraries (preload mode)")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    sections = set(args.sections.split(","))
    t_start = time.perf_counter()
    busy_before = activity()

    def on_signal(signum, frame):
        raise SystemExit(f"interrupted by signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    pg_config = shutil.which(PG_CONFIG) or PG_CONFIG
    bindir = run([pg_config, "--bindir"]).stdout.strip()
    version = run([pg_config, "--version"]).stdout.strip()
    rows, notes = [], []

    if not args.no_install and sections & {"cycle", "cheap", "mem", "archive"}:
        log("building and installing the extension into " + version)
        env = dict(os.environ)
        if os.path.isdir(os.path.expanduser("~/.cargo/bin")):
            env["PATH"] = os.path.expanduser("~/.cargo/bin") + ":" + env["PATH"]
        run(["make", "-s", "USE_PGXS=1", f"PG_CONFIG={pg_config}", "install"], cwd=REPO, env=env, timeout=600)

    cl = None
    try:
        if sections & {"cycle", "cheap", "mem", "status"}:
            cl = Cluster(bindir, "shared_preload_libraries = 'pg_exclusive_backup'\n" if args.preload else "")
            log(f"cluster in {cl.tmp}, port {cl.port}{', preload mode' if args.preload else ''}")
            cl.start()
            c = cl.conn("postgres")
            for db in ("excl", "nonexcl", "bench"):
                c.query(f"CREATE DATABASE {db}")
            c.close()
            c = cl.conn("excl")
            c.query("CREATE EXTENSION pg_exclusive_backup")
            ext = c.value("SELECT extversion FROM pg_extension WHERE extname = 'pg_exclusive_backup'")
            c.close()
            run([cl.bin("pgbench")] + cl.client_args() + ["-i", "-q", "-s", "1", "bench"], timeout=120)
            notes.insert(0, f"cluster: {version}, extension {ext}{' in preload mode' if args.preload else ''}, fsync on, autovacuum off, "
                            f"log_checkpoints on, other settings default; data in {cl.tmp}")
            if "cycle" in sections:
                bench_cycle(cl, cfg, rows, notes)
            if "cheap" in sections:
                bench_cheap(cl, cfg, rows, notes)
            if "mem" in sections:
                bench_mem(cl, cfg, rows, notes)
            if "status" in sections:
                bench_status(cl, cfg, rows, notes)
            bad = [ln for ln in cl.log_since(0).splitlines() if re.search(r"PANIC|TRAP:|terminated by signal", ln)]
            if bad:
                notes.append("server log shows crashes:\n    " + "\n    ".join(bad[:5]))
    finally:
        for p in list(CHILDREN):
            if p.poll() is None:
                p.kill()
                p.wait()
        if cl:
            cl.stop()
            cl.remove()
    if "archive" in sections:
        bench_archive(bindir, cfg, rows, notes)
    if "build" in sections:
        bench_build(cfg, rows, notes, pg_config)

    elapsed = time.perf_counter() - t_start
    busy_after = activity()
    print(f"pg_exclusive_backup benchmark, {'quick' if args.quick else 'full'} mode, "
          f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {machine()}")
    print(f"server: {version} ({pg_config}); repository HEAD "
          f"{run(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']).stdout.strip()}")
    print(f"other activity at start: {busy_before}")
    print(f"other activity at end:   {busy_after}")
    print()
    print_table(rows)
    print()
    for n in notes:
        print("- " + n)
    print(f"- benchmark run time: {elapsed:.0f} s")


if __name__ == "__main__":
    main()
