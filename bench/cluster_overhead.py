"""What cluster mode costs an authenticated request: the same gateway without and with
`cluster.redis`, each with a user without rate limit and one with a (never reached) limit.

(a) no cluster, user whose profile has no rate limit;
(b) cluster mode, the same user: the request path is the same (revocations and rights changes
    arrive through the bus, nothing is asked per request);
(c) no cluster, `--users` users (50) whose profile has `rateLimit`, each request as one of
    them (a wrk Lua script rotates the tokens): counted in the process;
(d) cluster mode, the same: each request runs one Lua script in Redis (atomic count for the
    whole cluster), one round trip, since requests of one user rarely arrive together;
(e) cluster mode, every request as one user with `rateLimit`: the requests of that user
    arriving while a count is out are counted together (one round trip per batch).

Both gateways use PostgreSQL (cluster mode requires it; a schema of their own, dropped after)
and the machine's Redis (a key prefix of its own, deleted after). Each gateway is pinned to
core 0, `wrk -t1` to core 1; Redis and PostgreSQL run where the system puts them. Runs alternate
a→b→c→d per round. Besides rates, the CPU time each gateway process used per request is
printed (bench/common.py process_cpu): on a machine shared with other work, rates vary with
the load while CPU per request stays meaningful.

    python bench/cluster_overhead.py [--duration 5] [--connections 50] [--rounds 2]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as `python bench/<script>.py`

import common

YAML = textwrap.dedent('''
    storage: "{storage}"
    {cluster}
    limits: {{login_attempts_per_second: 0}}
    security:
      roles:
        anonymous:
          controllers: {{auth: {{actions: {{login: true}}}}}}
        bencher:
          controllers:
            auth: {{actions: {{"*": true}}}}
            server: {{actions: {{now: true}}}}
      profiles:
        free: {{policies: [{{roleId: bencher}}]}}
        limited: {{policies: [{{roleId: bencher}}], rateLimit: 100000000}}
      users:
        free:
          profileIds: [free]
          credentials: {{local: {{username: free, password: "{password}"}}}}
{limited_users}
''')


ROTATE = """
tokens = {{{tokens}}}
i = 0
request = function()
  i = i + 1
  return wrk.format("GET", nil, {{["Authorization"] = "Bearer " .. tokens[i % #tokens + 1]}})
end
"""


def requests_done(out: str) -> int:
    found = re.search(r"(\d+) requests in", out)
    if not found:
        raise RuntimeError(f"no request count in wrk's report:\n{out}")
    return int(found.group(1))


def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    asyncio.run(drop())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=50, help="rate-limited users in (c), (d)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    if not common.require_wrk():
        return 2
    import redis

    labels = {"a": "no cluster, no rate limit", "b": "cluster, no rate limit",
              "c": f"no cluster, rateLimit, {args.users} users", "d":
              f"cluster, rateLimit, {args.users} users (Redis)",
              "e": "cluster, rateLimit, one user (batched)"}
    rates: dict[str, list[float]] = {key: [] for key in labels}
    cpu: dict[str, list[float]] = {key: [] for key in labels}
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    schemas = {mode: f"bench_{mode}_{uuid.uuid4().hex[:8]}" for mode in ("local", "cluster")}
    servers = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for mode in ("local", "cluster"):
                work = Path(tmp) / mode
                work.mkdir()
                cluster = (f'cluster: {{redis: "{args.redis}", prefix: "{prefix}"}}'
                           if mode == "cluster" else "")
                limited = "".join(
                    f"        l{i}:\n          profileIds: [limited]\n"
                    f"          credentials: {{local: {{username: l{i}, "
                    f"password: \"{common.PASSWORD}\"}}}}\n" for i in range(args.users))
                (work / "gateway.yaml").write_text(YAML.format(
                    storage=f"{args.postgres}?schema={schemas[mode]}", cluster=cluster,
                    password=common.PASSWORD, limited_users=limited.rstrip("\n")))
                port = common.free_port()
                command = common.gateway_cmd(port, "--config", "gateway.yaml")
                proc = common.serve(common.pinned(command, common.SERVER_CORE), work, port,
                                    work / "gateway.log")
                base = f"http://127.0.0.1:{port}"
                tokens = {}
                for user in ("free", *(f"l{i}" for i in range(args.users))):
                    login = httpx.post(f"{base}/_login/local", timeout=30, json={
                        "username": user, "password": common.PASSWORD})
                    login.raise_for_status()
                    tokens[user] = login.json()["result"]["jwt"]
                rotate = work / "rotate.lua"
                rotate.write_text(ROTATE.format(tokens=", ".join(
                    f'"{tokens[f"l{i}"]}"' for i in range(args.users))))
                servers[mode] = (proc, base, tokens, common.process_cpu(proc.pid), rotate)
            plan = {"a": ("local", "free"), "b": ("cluster", "free"),
                    "c": ("local", None), "d": ("cluster", None), "e": ("cluster", "l0")}
            for _ in range(args.rounds):
                for key, (mode, user) in plan.items():
                    _, base, tokens, used, rotate = servers[mode]
                    headers = {"Authorization": f"Bearer {tokens[user]}"} if user else {}
                    options = () if user else ("-s", str(rotate))
                    url = f"{base}/_now"
                    common.wrk(url, 2, args.connections, *options, headers=headers)  # warm-up
                    before = used()
                    out = common.wrk(url, args.duration, args.connections, *options,
                                     headers=headers)
                    spent = used() - before
                    rates[key].append(common.wrk_rate(out))
                    cpu[key].append(spent / requests_done(out) * 1e6)
        finally:
            for proc, *_ in servers.values():
                common.stop(proc)
            for schema in schemas.values():
                drop_schema(args.postgres, schema)
            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(f"{prefix}:*"))
            if keys:
                client.delete(*keys)
            client.close()
    print("gateway pinned to core 0, wrk -t1 on core 1; Redis and PostgreSQL unpinned; "
          "the machine may be loaded by other work: compare CPU per request first")
    mean = {key: sum(values) / len(values) for key, values in rates.items()}
    mean_cpu = {key: sum(values) / len(values) for key, values in cpu.items()}
    for key, label in labels.items():
        runs = ", ".join(f"{r:.0f}" for r in rates[key])
        print(f"({key}) {label:38s} {mean[key]:8.0f} req/s  {mean_cpu[key]:6.1f} µs CPU/req  "
              f"runs: [{runs}]")
    print(f"cluster/no cluster, no rate limit:  rate {mean['b'] / mean['a']:.3f}, "
          f"CPU/req {mean_cpu['b'] / mean_cpu['a']:.3f}")
    print(f"cluster/no cluster, rateLimit, {args.users} users: rate "
          f"{mean['d'] / mean['c']:.3f}, CPU/req {mean_cpu['d'] / mean_cpu['c']:.3f}")
    print(f"cluster one user (batched)/no cluster: rate {mean['e'] / mean['c']:.3f}, "
          f"CPU/req {mean_cpu['e'] / mean_cpu['c']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
