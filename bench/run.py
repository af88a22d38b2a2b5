"""wxgate against bare mitmdump on this machine, in one run (not run by CI).

    python bench/run.py [--seconds 8] [--reps 3] [--quick] [--profile] [--no-record]

What it does, all on 127.0.0.1:

1. Starts a fast upstream (`python -m tests.e2e.load serve`: asyncio, keep-alive, an
   11-byte JSON body) with a plain HTTP and a TLS port (trustme certificates), and four
   proxies from the same mitmproxy: bare `mitmdump` with its defaults
   (connection_strategy=eager), bare `mitmdump --set connection_strategy=lazy` (the fair
   pairing: wxgate forces lazy), `bare-dispatch` (the lazy mitmdump with its events
   delivered by wxgate's `Dispatch`, as `wxgate run` delivers them: the like-for-like
   reference, against which wxgate's ratio is what its own addons cost) and `wxgate run`
   with every rule on (3 apps, 20 domains each, faults off, log to a file, console off).
   All run with `-q`.
2. Load (a): wrk, absolute-form `GET http://127.0.0.1:<upstream>/` through the proxy. It
   carries no mini-program marker (a marked plain http:// call is blocked by
   scheme.insecure), so for wxgate this is the pass-through cost of other traffic.
   Load (b): CONNECT + TLS keep-alive clients (tests/e2e/load.py) with app 1's Referer to
   one of its listed domains, which `resolve:` maps to the TLS upstream, so every rule
   runs on an allowed call. Bare mitmdump gets the same requests to 127.0.0.1:<port> with
   the same SNI. Each at concurrency 1, 10 and 50; proxies interleaved in rotating order
   within each repetition, so a noisy neighbour hits all of them alike.
3. Timeout and background precision (fire time minus deadline, at the client), and
   `wxgate audit` against `mitmdump -n -r` on 100,000 flows when `wxgate audit` exists.
4. Appends a section to bench/RESULTS.md (--no-record: print only).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.load import (  # noqa: E402 - needs ROOT on sys.path first
    Closed,
    FastUpstream,
    Tunnel,
    percentile,
    proc_status,
    server_context,
)

APPIDS = ["wx0123456789abcdef", "wx1111111111111111", "wx2222222222222222"]
UA = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50 MiniProgramEnv/android"
REFERER = f"https://servicewechat.com/{APPIDS[0]}/0/page-frame.html"
# Per app: 20 entries, split over the four interfaces as a typical mini program does.
SPLIT = {"request": 12, "uploadFile": 3, "downloadFile": 3, "connectSocket": 2}
TARGET = "api-0-05.example.com"  # app 1's sixth request domain: not first in any list
PROXIES = ("bare", "bare-lazy", "bare-dispatch", "wxgate", "wxgate-base")
T0 = time.monotonic()


def say(message: str) -> None:
    elapsed = int(time.monotonic() - T0)
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


def domain(app: int, api: str, i: int) -> str:
    prefix = {"request": "api", "uploadFile": "up", "downloadFile": "cdn",
              "connectSocket": "ws"}[api]
    return f"{prefix}-{app}-{i:02d}.example.com"


def all_names() -> list[str]:
    return [domain(a, api, i) for a in range(3) for api, n in SPLIT.items() for i in range(n)]


def wxgate_config(tls_port: int, log: Path, **extra: Any) -> dict[str, Any]:
    apps = []
    for a, appid in enumerate(APPIDS):
        domains = {api: [f"{'wss' if api == 'connectSocket' else 'https'}://{domain(a, api, i)}"
                         for i in range(n)] for api, n in SPLIT.items()}
        apps.append({"appid": appid, "version": "0", "domains": domains})
    config: dict[str, Any] = {
        "mode": "enforce", "scope": "miniprogram", "allow_lan_ip": False, "block_with": "fail",
        # The bundled default's WeChat infrastructure list: run on every TLS ClientHello.
        "passthrough": [
            r"^(?!api\.weixin\.qq\.com$)([a-z0-9-]+\.)*(weixin|wechat|servicewechat)\.(qq\.)?com$",
            r"^([a-z0-9-]+\.)*(qpic|qlogo)\.cn$",
            r"^([a-z0-9-]+\.)*(wechat|tenpay)\.com$",
        ],
        "resolve": {name: f"127.0.0.1:{tls_port}" for name in all_names()},
        "apps": apps,
        # On, but above the offered load (50): the comparison measures the cost of the
        # rules, not the queueing the limit would rightly impose on 50 calls of one app.
        "limits": {"concurrency": 60, "concurrency_pool": "shared", "over_concurrency": "queue",
                   "sockets": 5, "background_grace_s": 5},
        "faults": [],
        "log": {"path": str(log), "console": "off"},
    }
    config.update(extra)
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str,
                   timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def upstream_ports(upstream: Proc, out: Path, timeout: float = 30.0) -> dict[str, int]:
    """The {"http": port, "https": port} line `load serve` prints once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if line.startswith("{"):
                return {k: int(v) for k, v in json.loads(line).items()}
        if upstream.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"upstream did not start: {out.read_text()[-2000:]}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Env:
    work: Path
    python: Path
    bindir: Path
    ca_file: Path  # the upstream's CA (trustme)
    cert: Path
    key: Path
    confdir: Path  # mitmproxy's CA, shared by all proxies
    procs: list[Proc] = field(default_factory=list)

    @property
    def proxy_ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def spawn(self, name: str, args: list[str], port: int | None = None,
              log: Path | None = None, stdin: bool = False, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Proc:
        out = (log or self.work / f"{name}.out").open("wb")
        proc = subprocess.Popen(args, cwd=cwd or self.work, stdout=out,
                                stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        entry = Proc(name, proc)
        self.procs.append(entry)
        if port is not None:
            entry.port = port
            wait_listening(port, proc, name)
        return entry

    def proxy(self, name: str, extra: list[str], src: Path | None = None) -> Proc:
        """A proxy on a free port; `src`: run wxgate's addons from that checkout instead
        (its directory goes first on PYTHONPATH, ahead of the installed package)."""
        port = free_port()
        env = None
        if src is not None:
            # The package's source is `addons/`, installed as `wxgate`: a checkout on
            # PYTHONPATH holds no `wxgate`, and the editable install's would run instead.
            # A folder with a `wxgate` link to the checkout's addons goes first.
            path = src.resolve()
            if (path / "addons" / "__init__.py").is_file():
                path = self.work / f"{name}-src"
                path.mkdir(exist_ok=True)
                (path / "wxgate").symlink_to(src.resolve() / "addons")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                filter(None, [str(path), os.environ.get("PYTHONPATH", "")]))}
        common = ["-q", "-p", str(port), "--listen-host", "127.0.0.1",
                  "--set", f"confdir={self.confdir}",
                  "--set", f"ssl_verify_upstream_trusted_ca={self.ca_file}"]
        if name.startswith("wxgate"):
            args = [str(self.bindir / "wxgate"), "run", *extra, *common]
        elif name == "bare-dispatch":
            args = [str(self.python), str(ROOT / "bench" / "mitmdump_dispatch.py"),
                    *common, *extra]
        else:
            args = [str(self.bindir / "mitmdump"), *common, *extra]
        return self.spawn(name, args, port, env=env)


@contextmanager
def environment(python: Path, keep: bool) -> Iterator[Env]:
    import trustme
    from mitmproxy.certs import CertStore

    work = Path(tempfile.mkdtemp(prefix="wxgate-bench-"))
    ca = trustme.CA()
    ca_file, cert, key = work / "upstream-ca.pem", work / "upstream.pem", work / "upstream.key"
    ca.cert_pem.write_to_path(str(ca_file))
    now = dt.datetime.now(dt.UTC)
    # 90 days, as a production certificate: trustme's default validity breaks the ATS
    # 825-day rule, and a tls.ats line on every call would be what the bench measured.
    leaf = ca.issue_cert(*all_names(), "bench.example.com",
                         not_before=now - dt.timedelta(days=1),
                         not_after=now + dt.timedelta(days=90))
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    confdir = work / "mitmproxy"
    # Made once here: three proxies starting together would each write their own CA.
    CertStore.from_store(str(confdir), "mitmproxy", 2048)
    env = Env(work, python, python.parent, ca_file, cert, key, confdir)
    try:
        yield env
    finally:
        for proc in reversed(env.procs):
            proc.stop()
        if keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- load runs


@dataclass
class Run:
    load: str  # wrk | https
    concurrency: int
    rep: int
    proxy: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_req: float


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is missing: apt-get update && apt-get install -y wrk")
    subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk did not install")
    return found


WRK_LUA = """\
-- Absolute-form, as a client configured with an HTTP proxy sends a plain http:// call.
wrk.method = "GET"
wrk.path = "http://127.0.0.1:%(port)d/wrk"
wrk.headers["Host"] = "127.0.0.1:%(port)d"
wrk.headers["User-Agent"] = "wrk (bench; no mini-program marker)"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"errors": %%d, "status_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def run_wrk(wrk: str, script: Path, proxy: Proc, concurrency: int, seconds: float
            ) -> dict[str, Any]:
    args = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", str(script), f"http://127.0.0.1:{proxy.port}/"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout}{done.stderr}")
    raw = json.loads(line.split(" ", 1)[1])
    seconds_run = raw["duration_us"] / 1e6
    return {"rps": raw["requests"] / seconds_run, "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "completed": raw["requests"],
            "errors": raw["errors"] + raw["status_errors"]}


def run_https(env: Env, proxy: Proc, tls_port: int, concurrency: int, seconds: float,
              warmup: float) -> dict[str, Any]:
    if proxy.name.startswith("wxgate"):
        where = ["--authority", f"{TARGET}:443"]
    else:
        # Bare mitmdump has no `resolve`: it is asked for the upstream's address, with
        # the same SNI, so both proxies make the same upstream TLS connection.
        where = ["--authority", f"127.0.0.1:{tls_port}", "--sni", TARGET]
    args = [str(env.python), "-m", "tests.e2e.load", "client", "--proxy-port", str(proxy.port),
            *where, "--ca", str(env.proxy_ca), "--path", "/api/item?id=42",
            "--header", f"Referer: {REFERER}", "--header", f"User-Agent: {UA}",
            "--concurrency", str(concurrency), "--seconds", str(seconds),
            "--warmup", str(warmup)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT,
                          timeout=seconds + warmup + 60)
    if done.returncode != 0:
        raise RuntimeError(f"client failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(env: Env, load: str, proxy: Proc, concurrency: int, rep: int, opts: Any,
            wrk: str, wrk_script: Path, tls_port: int) -> Run:
    if load == "wrk":
        run_wrk(wrk, wrk_script, proxy, concurrency, opts.warmup)  # warm-up, discarded
        before = cpu_seconds(proxy.pid)
        result = run_wrk(wrk, wrk_script, proxy, concurrency, opts.seconds)
    else:
        before = cpu_seconds(proxy.pid)
        result = run_https(env, proxy, tls_port, concurrency, opts.seconds, opts.warmup)
    spent = cpu_seconds(proxy.pid) - before
    # For https the CPU includes the warm-up's requests; count them at the measured rate.
    served = result["completed"] * (1 + (opts.warmup / opts.seconds if load == "https" else 0))
    run = Run(load, concurrency, rep, proxy.name, float(result["rps"]), float(result["p50_ms"]),
              float(result["p99_ms"]), int(result["errors"]),
              spent * 1000 / served if served else float("nan"))
    say(f"  {load} c={concurrency} rep {rep + 1} {proxy.name:9s} {run.rps:8.1f} req/s  "
        f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  cpu {run.cpu_ms_per_req:5.2f} "
        f"ms/req  errors {run.errors}")
    return run


# --------------------------------------------------------------------------- precision


async def control_post(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # The control API takes state changes as JSON only.
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n"
                 "Content-Type: application/json\r\n"
                 "Connection: close\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return int(head.split(b" ", 2)[1])


async def timeout_trials(proxy_port: int, ca: ssl.SSLContext, trials: int, limit_ms: int
                         ) -> list[float]:
    """Fire time minus deadline (ms): request written -> connection closed, minus limit."""
    late: list[float] = []
    # App 2 carries the short timeout, so that app 1's background trials are not cut by it.
    headers = {"Referer": f"https://servicewechat.com/{APPIDS[1]}/0/page-frame.html",
               "User-Agent": UA}
    for i in range(trials):
        tunnel = await Tunnel.open(proxy_port, f"{domain(1, 'request', 5)}:443", tls=ca)
        began = time.perf_counter()
        try:
            reply = await tunnel.request(f"/slow?ms=5000&tag=t{i}", headers, timeout=10)
            raise RuntimeError(f"timeout trial {i} was answered: {reply.status}")
        except Closed:
            late.append((time.perf_counter() - began) * 1000 - limit_ms)
        finally:
            tunnel.abort()
    return late


async def background_trials(proxy_port: int, control_port: int, ca: ssl.SSLContext,
                            upstream: FastUpstream, trials: int, per_trial: int,
                            grace_s: int) -> list[float]:
    """Fire time minus deadline (ms): `per_trial` running calls, POST background, each
    call's connection closed; deadline = the moment the POST was sent + grace."""
    late: list[float] = []
    headers = {"Referer": REFERER, "User-Agent": UA}
    appid = APPIDS[0]
    for trial in range(trials):
        tunnels = [await Tunnel.open(proxy_port, f"{TARGET}:443", tls=ca)
                   for _ in range(per_trial)]
        tags = [f"b{grace_s}-{trial}-{k}" for k in range(per_trial)]
        calls = [asyncio.ensure_future(t.request(f"/slow?ms=10000&tag={tag}", headers,
                                                 timeout=grace_s + 8))
                 for t, tag in zip(tunnels, tags, strict=True)]
        # Running means the upstream has the request: only then is the call "in flight".
        deadline = time.monotonic() + 5
        while not all(tag in upstream.stats.seen for tag in tags):
            if time.monotonic() > deadline:
                raise RuntimeError(f"background trial {trial}: calls never reached upstream")
            await asyncio.sleep(0.002)
        sent = time.perf_counter()
        status = await control_post(control_port, f"/apps/{appid}/background")
        if status != 200:
            raise RuntimeError(f"background refused: {status}")

        async def closed_at(call: asyncio.Future[Any]) -> float:
            try:
                await call
            except Closed:
                return time.perf_counter()
            raise RuntimeError("a backgrounded call was answered")

        for when in await asyncio.gather(*(closed_at(c) for c in calls)):
            late.append((when - sent - grace_s) * 1000)
        for tunnel in tunnels:
            tunnel.abort()
        await control_post(control_port, f"/apps/{appid}/foreground")
    return late


def precision(env: Env, opts: Any) -> dict[str, list[float]]:
    import yaml

    upstream = FastUpstream(server_context(env.cert, env.key)).start_in_thread()
    ca = ssl.create_default_context(cafile=str(env.proxy_ca))
    found: dict[str, list[float]] = {}
    try:
        for grace in (0, 1):
            config = wxgate_config(upstream.https_port, env.work / f"precision-g{grace}.jsonl")
            config["apps"][1]["network_timeout"] = {"request": opts.timeout_ms}
            config["limits"]["background_grace_s"] = grace
            path = env.work / f"precision-g{grace}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            control = free_port()
            proxy = env.proxy(f"wxgate-precision-g{grace}",
                              ["-c", str(path), "--control-port", str(control)])
            wait_listening(control, proxy.proc, "control port")
            if grace == 0:
                say(f"timeout precision: {opts.trials} trials, network_timeout.request "
                    f"{opts.timeout_ms} ms against a 5 s upstream")
                found["timeout"] = asyncio.run(
                    timeout_trials(proxy.port, ca, opts.trials, opts.timeout_ms))
                found["timeout (proxy log)"] = [
                    float(e["elapsed_ms"] - e["limit_ms"]) for e in read_log(
                        env.work / "precision-g0.jsonl") if e.get("rule") == "timeout.exceeded"]
            per_trial = 1 if grace == 0 else 4
            trials = max(1, opts.trials // per_trial)
            say(f"background precision, grace {grace} s: {trials} trials x {per_trial} "
                "running calls")
            found[f"background, grace {grace} s"] = asyncio.run(background_trials(
                proxy.port, control, ca, upstream, trials, per_trial, grace))
            proxy.stop()
    finally:
        upstream.close()
    return found


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- audit


def audit_wired(env: Env) -> bool:
    done = subprocess.run([str(env.bindir / "wxgate"), "--help"], capture_output=True,
                          text=True, timeout=60)
    return " audit" in done.stdout or "{run,ctl,check-config,audit" in done.stdout or any(
        line.strip().startswith("audit") for line in done.stdout.splitlines())


# Reading the flows and nothing else: what the audit's speed and memory are measured against.
DESERIALISE = """
import sys
from mitmproxy.io import FlowReader
with open(sys.argv[1], "rb") as fo:
    for flow in FlowReader(fo).stream():
        pass
"""


def _tree_pss_kb(pid: int) -> int:
    """Memory of a process and all its descendants now, in KiB (Linux /proc): the
    proportional set size, so that pages a forked process shares with its parent count
    once, not once per process as RSS counts them."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += int(next(line.split()[1] for line in rollup.splitlines()
                              if line.startswith("Pss:")))
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def measured(args: list[str], cwd: Path) -> dict[str, Any]:
    """Run a command; wall time, the peak RSS of its largest process (from wait4) and the
    peak memory of all its processes together (PSS, sampled every 20 ms)."""
    began = time.monotonic()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tree_peak = 0
    while proc.poll() is None:
        tree_peak = max(tree_peak, _tree_pss_kb(proc.pid))
        time.sleep(0.02)
    seconds = time.monotonic() - began
    # Popen reaped it: its own peak and that of its reaped children are in RUSAGE_CHILDREN,
    # which keeps a maximum over all children so far, so each command runs in a fresh
    # helper process (see audit_bench) to read it alone.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {"seconds": seconds, "exit": proc.returncode, "rss_mb": usage.ru_maxrss / 1024,
            "tree_mb": tree_peak / 1024, "stderr": stderr[-2000:]}


def audit_bench(env: Env, flows: int) -> dict[str, Any]:
    """`wxgate audit` (one process, then every core) against reading the flows alone and
    against `mitmdump -n -q -r`, on the same capture, each in a fresh process."""
    if not audit_wired(env):
        return {"status": "not run: audit not wired yet (`wxgate --help` has no audit)"}
    sys.path.insert(0, str(ROOT / "bench"))
    from audit_memory import CONFIG, write_capture  # the same synthetic capture

    capture, config = env.work / "capture.mitm", env.work / "audit.yaml"
    config.write_text(CONFIG)
    say(f"audit: writing {flows:,} synthetic flows")
    write_capture(capture, flows)
    python = env.bindir / "python"
    result: dict[str, Any] = {"flows": flows, "mb": capture.stat().st_size / 1e6}
    wxgate_audit = [str(env.bindir / "wxgate"), "audit", str(capture), "-c", str(config),
                    "--no-progress"]
    commands = {
        "deserialise only": [str(python), "-c", DESERIALISE, str(capture)],
        "mitmdump -n -q -r": [str(env.bindir / "mitmdump"), "-n", "-q", "-r", str(capture),
                              "--set", f"confdir={env.confdir}"],
        "wxgate audit --jobs 1": [*wxgate_audit, "--jobs", "1", "--jsonl",
                                  str(env.work / "audit-1.jsonl")],
        "wxgate audit": [*wxgate_audit, "--jsonl", str(env.work / "audit-n.jsonl")],
    }
    for name, args in commands.items():
        say(f"audit: {name}")
        # A fresh interpreter per command, so that RUSAGE_CHILDREN holds this one alone.
        probe = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--measure-json", json.dumps(args)],
            capture_output=True, text=True, cwd=env.work, timeout=3600)
        found = json.loads(probe.stdout.strip().splitlines()[-1])
        if found["exit"] not in (0, 1):
            raise RuntimeError(f"{name} exited {found['exit']}: {found['stderr']}")
        found["flows_per_s"] = flows / found["seconds"]
        result[name] = found
        say(f"audit: {name}: {found['seconds']:.1f} s, {found['rss_mb']:.0f} MB "
            f"(all processes {found['tree_mb']:.0f} MB PSS)")
    one, many = (sorted((env.work / f"audit-{n}.jsonl").read_text().splitlines())
                 for n in ("1", "n"))
    result["same_lines"] = [_without_timestamp(x) for x in one] == [
        _without_timestamp(x) for x in many]
    result["lines"] = len(one)
    result["status"] = "run"
    return result


def _without_timestamp(line: str) -> str:
    event = json.loads(line)
    event.pop("timestamp", None)
    return json.dumps(event, sort_keys=True)


# --------------------------------------------------------------------------- profile


def profile(env: Env, proxy: Proc, tls_port: int, seconds: float) -> str:
    """py-spy on wxgate under the HTTPS load at c=10: where an allowed call's time goes."""
    spy = shutil.which("py-spy") or str(env.bindir / "py-spy")
    if not Path(spy).exists():
        return "not run: py-spy is not installed (pip install py-spy)"
    raw = ROOT / "bench" / "out" / "profile-wxgate-https-c10.txt"
    raw.parent.mkdir(exist_ok=True)
    say(f"profile: py-spy on wxgate (pid {proxy.pid}) for {seconds:.0f} s at c=10")
    client = subprocess.Popen(
        [str(env.python), "-m", "tests.e2e.load", "client", "--proxy-port", str(proxy.port),
         "--authority", f"{TARGET}:443", "--ca", str(env.proxy_ca), "--path", "/api/item",
         "--header", f"Referer: {REFERER}", "--header", f"User-Agent: {UA}",
         "--concurrency", "10", "--seconds", str(seconds + 2), "--warmup", "1"],
        cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        subprocess.run([spy, "record", "-p", str(proxy.pid), "-d", str(int(seconds)),
                        "-r", "200", "--format", "raw", "-o", str(raw)],
                       capture_output=True, timeout=seconds + 60, check=True)
    finally:
        client.wait(seconds + 60)
    return summarize_profile(raw)


def summarize_profile(raw: Path) -> str:
    total = 0
    under: Counter[str] = Counter()
    hooks = 0
    wx = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        if any("handle_lifecycle" in f for f in frames):
            hooks += n
        seen = set()
        for frame in frames:
            if "(addons/" in frame and "addons/cli.py" not in frame:
                name = frame.split(" (")[0] + " (" + frame.split("(addons/")[1].split(":")[0] + ")"
                if name not in seen:
                    under[name] += n
                    seen.add(name)
        if any("(addons/" in f and "addons/cli.py" not in f for f in frames):
            wx += n
    lines = [f"- samples: {total} (py-spy, 200 Hz); in any addon hook dispatch "
             f"(`AddonManager.handle_lifecycle`, mitmproxy's and wxgate's): "
             f"{hooks / total:.1%}; in wxgate code (`addons/`): **{wx / total:.1%}**",
             "", "| inclusive | wxgate function |", "|---:|---|"]
    lines += [f"| {n / total:.1%} | `{name}` |" for name, n in under.most_common(12)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_tables(runs: list[Run]) -> str:
    by: dict[tuple[str, int, str], list[Run]] = defaultdict(list)
    for run in runs:
        by[(run.load, run.concurrency, run.proxy)].append(run)
    out = []
    for load in ("wrk", "https"):
        keys = sorted({(c) for (lo, c, _) in by if lo == load})
        if not keys:
            continue
        title = ("(a) wrk, absolute-form plain HTTP, no mini-program marker: pass-through"
                 if load == "wrk" else
                 "(b) CONNECT + TLS keep-alive, app 1's Referer to a listed domain: every "
                 "rule runs on an allowed call")
        out += [f"**{title}**", "",
                "| c | proxy | req/s | p50 ms | p99 ms | proxy CPU ms/req | errors |",
                "|---:|---|---:|---:|---:|---:|---:|"]
        for c in keys:
            for proxy in PROXIES:
                rs = by.get((load, c, proxy), [])
                if not rs:
                    continue
                out.append(
                    f"| {c} | {proxy} | {med([r.rps for r in rs]):.0f} | "
                    f"{med([r.p50_ms for r in rs]):.2f} | {med([r.p99_ms for r in rs]):.2f} | "
                    f"{med([r.cpu_ms_per_req for r in rs]):.2f} | "
                    f"{sum(r.errors for r in rs)} |")
        out += ["", "| c | wxgate vs | throughput ratio (median, min-max over reps) | "
                "p50 added ms | p99 added ms | CPU/req ratio | targets |",
                "|---:|---|---:|---:|---:|---:|---|"]
        for c in keys:
            for base in ("bare-lazy", "bare", "bare-dispatch", "wxgate-base"):
                pairs = [(w, b) for w in by.get((load, c, "wxgate"), [])
                         for b in by.get((load, c, base), []) if w.rep == b.rep]
                if not pairs:
                    continue
                ratios = [w.rps / b.rps for w, b in pairs if b.rps]
                p50 = med([w.p50_ms - b.p50_ms for w, b in pairs])
                p99 = med([w.p99_ms - b.p99_ms for w, b in pairs])
                cpu = med([w.cpu_ms_per_req / b.cpu_ms_per_req for w, b in pairs])
                ok = ("met" if med(ratios) >= 0.95 and p50 <= 1.0 else
                      "throughput " + ("met" if med(ratios) >= 0.95 else "MISSED") +
                      ", p50 " + ("met" if p50 <= 1.0 else "MISSED"))
                fair = {"bare-lazy": " (fair)", "bare": " (defaults)",
                        "bare-dispatch": " (like for like)"}.get(base, "")
                out.append(f"| {c} | {base}{fair} | {med(ratios):.3f} ({min(ratios):.2f}-"
                           f"{max(ratios):.2f}) | {p50:+.2f} | {p99:+.2f} | {cpu:.2f} | {ok} |")
        out.append("")
    return "\n".join(out)


def precision_table(found: dict[str, list[float]]) -> str:
    out = ["| what | n | min ms | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|---:|"]
    for name, values in found.items():
        if not values:
            out.append(f"| {name} | 0 | | | | |")
            continue
        out.append(f"| {name} | {len(values)} | {min(values):+.1f} | "
                   f"{percentile(values, 50):+.1f} | {percentile(values, 99):+.1f} | "
                   f"{max(values):+.1f} |")
    return "\n".join(out)


def versions(env: Env) -> str:
    from mitmproxy import version

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        rev = "?"
    return (f"Python {platform.python_version()}, mitmproxy {version.VERSION}, wxgate "
            f"{rev or '?'} (git rev-parse --short HEAD; the work tree may have changes)")


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return (f"{os.cpu_count()} CPUs ({model}), {int(mem) // 1024 // 1024} GiB, "
            f"{platform.system()} {platform.release()}; load average at start "
            f"{Path('/proc/loadavg').read_text().split()[0]}")


def record(text: str) -> None:
    results = ROOT / "bench" / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n\nAppended by the scripts in bench/; "
                           "newest last.\n")
    with results.open("a") as out:  # append only: other scripts own other sections
        out.write("\n" + text)


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--loads", default="wrk,https")
    parser.add_argument("--trials", type=int, default=200, help="precision trials")
    parser.add_argument("--timeout-ms", type=int, default=200)
    parser.add_argument("--audit-flows", type=int, default=100_000)
    parser.add_argument("--skip", default="", help="comma list of: load,precision,audit")
    parser.add_argument("--profile", action="store_true", help="py-spy wxgate under load")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s runs, 1 rep, 20 trials, 2,000 audit flows")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-record", action="store_true", help="don't append to RESULTS.md")
    parser.add_argument("--baseline-src", metavar="DIR",
                        help="also run wxgate from another checkout (e.g. before a change) "
                             "as `wxgate-base`, interleaved with the others")
    parser.add_argument("--measure-json", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.measure_json:  # the fresh process audit_bench runs one command in
        print(json.dumps(measured(json.loads(opts.measure_json), Path.cwd())))
        return 0
    if opts.quick:
        opts.seconds, opts.reps, opts.trials, opts.audit_flows = 2.0, 1, 20, 2000
    skip = set(filter(None, opts.skip.split(",")))
    command = "python bench/run.py" + "".join(f" {a}" for a in sys.argv[1:])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    python = Path(sys.executable)
    concurrencies = [int(c) for c in opts.concurrency.split(",")]
    loads = [lo for lo in opts.loads.split(",") if lo]
    runs: list[Run] = []
    rss: dict[str, dict[str, int]] = {}
    found: dict[str, list[float]] = {}
    audit: dict[str, Any] = {"status": "skipped"}
    profiled = ""
    with environment(python, opts.keep) as env:
        say(f"{versions(env)}; {machine()}")
        say(f"work directory {env.work}")
        if "load" not in skip:
            wrk = ensure_wrk() if "wrk" in loads else ""
            upstream = env.spawn("upstream", [
                str(python), "-m", "tests.e2e.load", "serve", "--cert", str(env.cert),
                "--key", str(env.key)], stdin=True, log=env.work / "upstream.out", cwd=ROOT)
            ports = upstream_ports(upstream, env.work / "upstream.out")
            wrk_script = env.work / "proxy.lua"
            wrk_script.write_text(WRK_LUA % {"port": ports["http"]})
            import yaml

            config = env.work / "wxgate.yaml"
            config.write_text(yaml.safe_dump(
                wxgate_config(ports["https"], env.work / "violations.jsonl"), sort_keys=False))
            proxies = [
                env.proxy("bare", []),
                env.proxy("bare-lazy", ["--set", "connection_strategy=lazy"]),
                env.proxy("bare-dispatch", ["--set", "connection_strategy=lazy"]),
                env.proxy("wxgate", ["-c", str(config)]),
            ]
            if opts.baseline_src:
                proxies.append(env.proxy("wxgate-base", ["-c", str(config)],
                                         src=Path(opts.baseline_src).resolve()))
            say("proxies: " + ", ".join(f"{p.name} pid {p.pid} :{p.port}" for p in proxies))
            total = len(loads) * len(concurrencies) * opts.reps * len(proxies)
            say(f"{total} runs of {opts.warmup:.0f}+{opts.seconds:.0f} s")
            for load in loads:
                for c in concurrencies:
                    for rep in range(opts.reps):
                        # Rotate who goes first: drift in the neighbours' load is shared.
                        turn = rep % len(proxies)
                        order = proxies[turn:] + proxies[:turn]
                        for proxy in order:
                            runs.append(measure(env, load, proxy, c, rep, opts, wrk,
                                                wrk_script, ports["https"]))
            if opts.profile:
                profiled = profile(env, next(p for p in proxies if p.name == "wxgate"),
                                   ports["https"], 15)
            for proxy in proxies:
                rss[proxy.name] = proc_status(proxy.pid)
            violations = [e for e in read_log(env.work / "violations.jsonl")
                          if e.get("event") == "violation"]
            if violations:
                # Then the bench measured logging, not judging: say so in the results.
                logged = dict(Counter(e["rule"] for e in violations))
                say(f"WARNING: wxgate logged {len(violations)} violations on allowed load: "
                    f"{logged}")
                rss["_violations"] = logged
            for proxy in proxies:
                proxy.stop()
            upstream.stop()
            print()
            print(load_tables(runs))
        if "precision" not in skip:
            found = precision(env, opts)
            print(precision_table(found))
        if "audit" not in skip:
            audit = audit_bench(env, opts.audit_flows)
            say(f"audit: {audit['status']}")
        section = report(stamp, command, env, opts, runs, rss, found, audit, profiled)
    print()
    print(section)
    if not opts.no_record:
        record(section)
        say("appended to bench/RESULTS.md")
    return 0


def report(stamp: str, command: str, env: Env, opts: Any, runs: list[Run],
           rss: dict[str, dict[str, int]], found: dict[str, list[float]],
           audit: dict[str, Any], profiled: str) -> str:
    lines = [
        f"## proxy overhead: wxgate against bare mitmdump, {stamp}",
        "",
        f"- command: `{command}` (from the repository root; `make bench`)",
        f"- versions: {versions(env)}",
        f"- machine: {machine()}. Client, upstream and proxy share these cores with "
        "each other and with whatever else runs: figures are noisy, so wxgate and bare "
        f"run interleaved in rotating order, {opts.reps} repetitions of {opts.seconds:.0f} s "
        f"(after {opts.warmup:.0f} s warm-up), and the tables show medians.",
        "- proxies, all `-q`, same mitmproxy: `bare` = `mitmdump` with its defaults "
        "(connection_strategy=eager); `bare-lazy` = `mitmdump --set connection_strategy=lazy`, "
        "the fair pairing (wxgate forces lazy); `bare-dispatch` = that lazy `mitmdump` with "
        "its events delivered by wxgate's `Dispatch` (bench/mitmdump_dispatch.py), as "
        "`wxgate run` delivers them: wxgate against it is what wxgate's own addons cost, "
        "wxgate against bare also counts what `Dispatch` saves mitmproxy; "
        "`wxgate` = `wxgate run` with 3 apps x 20 "
        "domains, enforce, every rule on (concurrency limit 60, above the offered load), "
        "faults off, the default passthrough list, `resolve` for all 60 names, log to a file, "
        "console off.",
        *([f"- `wxgate-base` = the same `wxgate run`, with the addons of `{opts.baseline_src}` "
           "first on PYTHONPATH (another checkout, e.g. before a change), interleaved too."]
          if opts.baseline_src else []),
        "- added latency = wxgate minus bare, per repetition, median; proxy CPU ms/req = "
        "utime+stime of the proxy process over the requests it served (less noisy than "
        "req/s on a shared machine).",
        "- (a) measures what non-mini-program traffic pays: a plain http:// call that carries "
        "mini-program markers is blocked (scheme.insecure), so wrk's traffic is unmarked "
        "and wxgate only identifies it and lets it pass.",
        "",
    ]
    if runs:
        lines += [load_tables(runs), "**Peak RSS** (VmHWM, after all load runs):", "",
                  "| proxy | VmHWM MB | VmRSS MB |", "|---|---:|---:|"]
        lines += [f"| {name} | {st.get('VmHWM', 0) / 1024:.0f} | {st.get('VmRSS', 0) / 1024:.0f} |"
                  for name, st in rss.items() if not name.startswith("_")]
        lines.append("")
        if "_violations" in rss:
            lines += [f"**WARNING**: wxgate logged violations on the allowed load "
                      f"({rss['_violations']}): these figures include a log line per call.", ""]
    if found:
        lines += [
            "**Timeout and background precision** (fire time minus deadline, measured at the "
            f"client; negative = early). Timeout: network_timeout.request {opts.timeout_ms} ms "
            "against an upstream that holds 5 s, request written to connection closed; "
            "`(proxy log)` is the `elapsed_ms - limit_ms` wxgate logs (ms resolution). "
            "Background: `POST /apps/{appid}/background` on the control port while calls are "
            "running at the upstream, deadline = POST sent + background_grace_s, fire = the "
            "call's connection closed (grace 1 s: 4 running calls per trial).", "",
            precision_table(found), ""]
    if audit.get("status") == "run":
        base = audit["deserialise only"]
        lines += [
            f"**Audit** of {audit['flows']:,} synthetic flows ({audit['mb']:.0f} MB, "
            "bench/audit_memory.py's capture: a call every 20 ms, so no moment without a call "
            "in flight), each command in a fresh process, one after the other. Speed is "
            "`deserialise only` time / command time; peak RSS is the largest process's (wait4); "
            "`all processes` is the peak of their proportional set sizes added up (PSS: a "
            "page shared by forked processes counts once), sampled every 20 ms.", "",
            "| command | seconds | flows/s | speed vs deserialise | peak RSS MB | "
            "all processes PSS MB | RSS vs deserialise |",
            "|---|---:|---:|---:|---:|---:|---:|"]
        for name in ("deserialise only", "mitmdump -n -q -r", "wxgate audit --jobs 1",
                     "wxgate audit"):
            row = audit[name]
            lines.append(
                f"| `{name}` | {row['seconds']:.1f} | {row['flows_per_s']:,.0f} | "
                f"{base['seconds'] / row['seconds']:.2f}x | {row['rss_mb']:.0f} | "
                f"{row['tree_mb']:.0f} | {row['rss_mb'] / base['rss_mb']:.2f}x |")
        lines += ["", f"The one-process and the all-cores audit wrote the same "
                      f"{audit['lines']:,} lines: {'yes' if audit['same_lines'] else 'NO'}.", ""]
    elif audit.get("status") != "skipped":
        lines += [f"**Audit throughput**: {audit['status']}.", ""]
    if profiled:
        lines += ["**Profile** of wxgate under load (b) at c=10:", "", profiled, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
