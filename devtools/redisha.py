"""A private Redis that can fail over: a primary, one replica and three sentinels (quorum 2).

Real ``redis-server`` processes (sentinels are ``redis-server <conf> --sentinel``: no new
dependency) on free ports in a temp dir, each dying with its creator (see
:func:`devtools.redisserver.die_with_parent`). The sentinels notice a dead primary after
``down_after_ms`` (1 s) and promote the replica within a few seconds, so tests and benchmarks
can kill the primary mid-session and watch every process carry on:

    with RedisHA(workdir) as ha:          # or RedisHA(workdir, tls=True): TLS + ACL, no default user
        env = ha.env()                    # BROKERGATE_REDIS_* for the processes under test
        killed_at = ha.kill_primary()     # SIGKILL
        new = ha.wait_failover()          # a sentinel names the replica and it answers as master
        ha.restart_old_primary_as_replica()

The TLS variant generates a CA, a server and a client certificate with ``openssl`` in the temp
dir; every node (sentinels included) listens on its TLS port only, replicates over TLS and
refuses anyone but the ACL user (``user default off``), whose password is made up per run.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from devtools.processes import stop_process
from devtools.redisserver import ask, free_port, spawn_redis, wait_answering
from devtools.waiting import until

__all__ = ["HANode", "RedisHA", "TLSFiles", "make_tls"]

HOST = "127.0.0.1"
MASTER_NAME = "brokergate"
USERNAME = "brokergate"


@dataclass(frozen=True)
class TLSFiles:
    """A CA and the certificates it signed (one for servers, one for clients), PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_tls(directory: Path) -> TLSFiles:
    """A throwaway CA and two certificates for 127.0.0.1 / localhost (about 0.1 s of openssl)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed: the TLS variant generates its certificates with it")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "2", "-subj", "/CN=brokergate test CA")  # fmt: skip
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    made = {}
    for who in ("server", "client"):
        key, csr, crt = directory / f"{who}.key", directory / f"{who}.csr", directory / f"{who}.crt"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={who}")
        _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
                 "-days", "2", "-extfile", ext)  # fmt: skip
        key.chmod(0o600)  # redis-server reads it; nobody else needs to
        made[who] = (crt, key)
    return TLSFiles(ca, made["server"][0], made["server"][1], made["client"][0], made["client"][1])


@dataclass
class HANode:
    """One redis-server (data node or sentinel) of a :class:`RedisHA`."""

    name: str
    port: int
    workdir: Path
    conf: list[str]
    sentinel: bool = False
    client_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def spawn(self, extra: list[str] | None = None) -> None:
        conf_path = self.workdir / f"{self.name}.conf"
        # A sentinel rewrites its own file (what it learnt about the topology): written once.
        if not (self.sentinel and conf_path.exists()):
            conf_path.write_text("\n".join([*self.conf, *(extra or [])]) + "\n")
            conf_path.chmod(0o600)  # it holds the ACL user's password
        self.proc = spawn_redis([str(conf_path), *(["--sentinel"] if self.sentinel else [])])

    def client(self, timeout_s: float = 1.0) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                           decode_responses=True, **self.client_kwargs)  # fmt: skip

    def ping(self) -> bool:
        return ask(self.client(0.3), lambda c: bool(c.ping()), False)

    def role(self) -> str | None:
        """``master``, ``slave``, ``sentinel``, or None when it does not answer."""
        return ask(self.client(0.3), lambda c: str(c.execute_command("ROLE")[0]), None)

    def wait_up(self, timeout_s: float = 10.0) -> None:
        assert self.proc is not None
        wait_answering(self.proc, self.ping, self.log_path, self.name, timeout_s)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last fsync, no goodbye to the sentinels (as a crashed host)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=10)


class RedisHA:
    """A primary, a replica and three sentinels watching them as ``master_name`` (see the module)."""

    def __init__(self, workdir: Path | None = None, *, tls: bool = False, master_name: str = MASTER_NAME,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 2000, appendonly: bool = True,
                 client_certs: bool = True) -> None:  # fmt: skip
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="bg-redisha-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.client_certs = client_certs
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.appendonly = appendonly
        # The ACL user exists in the TLS variant only; the plain one is today's open local Redis.
        self.username: str | None = USERNAME if tls else None
        self.password: str | None = secrets.token_urlsafe(18) if tls else None
        self.tls_files: TLSFiles | None = make_tls(self.workdir / "tls") if tls else None
        self.data: list[HANode] = [self._node("redis-a"), self._node("redis-b")]
        self.sentinels: list[HANode] = [self._node(f"sentinel-{i}", sentinel=True) for i in (1, 2, 3)]
        self.primary, self.replica = self.data

    # --- configuration ---------------------------------------------------------------------------

    def _listen(self, port: int) -> list[str]:
        if self.tls_files is None:
            return [f"port {port}", f"bind {HOST}"]
        t = self.tls_files
        return [
            "port 0", f"tls-port {port}", f"bind {HOST}", f"tls-cert-file {t.server_cert}",
            f"tls-key-file {t.server_key}", f"tls-ca-cert-file {t.ca}", "tls-replication yes",
            # replicas and sentinels present this certificate when they connect out
            f"tls-client-cert-file {t.server_cert}", f"tls-client-key-file {t.server_key}",
            f"tls-auth-clients {'yes' if self.client_certs else 'no'}",
        ]  # fmt: skip

    def _acl(self) -> list[str]:
        if self.username is None:
            return []
        return ["user default off", f"user {self.username} on >{self.password} ~* &* +@all"]

    def client_kwargs(self) -> dict[str, Any]:
        """What redis-py needs to talk to any node (data or sentinel) of this set."""
        kw: dict[str, Any] = {}
        if self.username is not None:
            kw.update(username=self.username, password=self.password)
        if self.tls_files is not None:
            kw.update(ssl=True, ssl_ca_certs=str(self.tls_files.ca))
            if self.client_certs:
                kw.update(ssl_certfile=str(self.tls_files.client_cert), ssl_keyfile=str(self.tls_files.client_key))
        return kw

    def _node(self, name: str, *, sentinel: bool = False) -> HANode:
        port = free_port()
        conf = [*self._listen(port), *self._acl(), f"dir {self.workdir}", f"logfile {self.workdir / name}.log"]
        if sentinel:
            if self.username is not None:
                conf += [f"sentinel sentinel-user {self.username}", f"sentinel sentinel-pass {self.password}"]
        else:
            conf += [
                f"dbfilename {name}.rdb", f"appendfilename {name}.aof", f"appenddirname {name}-aof",
                'save ""', f"appendonly {'yes' if self.appendonly else 'no'}", "appendfsync always",
                "maxmemory-policy noeviction", "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
            ]  # fmt: skip
            if self.username is not None:
                conf += [f"masteruser {self.username}", f"masterauth {self.password}"]
        return HANode(name, port, self.workdir, conf, sentinel=sentinel, client_kwargs=self.client_kwargs())

    def _monitor_lines(self) -> list[str]:
        m = self.master_name
        lines = [
            f"sentinel monitor {m} {HOST} {self.primary.port} 2",
            f"sentinel down-after-milliseconds {m} {self.down_after_ms}",
            f"sentinel failover-timeout {m} {self.failover_timeout_ms}", f"sentinel parallel-syncs {m} 1",
            # Told, not discovered: a sentinel learns replicas from the primary's INFO every 10 s,
            # and its first may come before the replica connected.
            f"sentinel known-replica {m} {HOST} {self.replica.port}",
        ]  # fmt: skip
        if self.username is not None:
            lines += [f"sentinel auth-user {m} {self.username}", f"sentinel auth-pass {m} {self.password}"]
        return lines

    # --- life cycle ------------------------------------------------------------------------------

    def start(self, timeout_s: float = 20.0) -> RedisHA:
        """Start every node and return once the sentinels know the replica and each other."""
        self.primary.spawn()
        self.replica.spawn([f"replicaof {HOST} {self.primary.port}"])
        for s in self.sentinels:
            s.spawn(self._monitor_lines())
        for node in (*self.data, *self.sentinels):
            node.wait_up(timeout_s)
        self.wait_settled(timeout_s)
        return self

    def stop(self) -> None:
        # Sentinels first: a data node going away must not start a failover on the way out.
        for node in (*self.sentinels, *self.data):
            node.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisHA:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the sentinels say ------------------------------------------------------------------

    def sentinel_master(self, sentinel: HANode) -> tuple[str, int] | None:
        """The primary's address as ``sentinel`` reports it (None when it does not answer)."""
        got = ask(sentinel.client(0.3),
                  lambda c: c.execute_command("SENTINEL", "get-master-addr-by-name", self.master_name), None)
        return (str(got[0]), int(got[1])) if got else None

    def _steady(self) -> bool:
        """Every sentinel names the primary, sees the other two and the replica healthy, and the
        replica is in sync: a kill now is a clean failover (and a benchmark's next round fair)."""
        if self.primary.role() != "master" or self.replica.role() != "slave":
            return False
        try:
            with self.replica.client(0.3) as rc:
                if rc.info("replication").get("master_link_status") != "up":
                    return False
            for s in self.sentinels:
                with s.client(0.3) as sc:
                    master = sc.sentinel_master(self.master_name)
                    replicas = sc.sentinel_slaves(self.master_name)
                if int(master["port"]) != self.primary.port or master.get("num-other-sentinels") != 2:
                    return False
                mine = [r for r in replicas if int(r["port"]) == self.replica.port]
                if not mine or mine[0].get("master-link-status") != "ok" or set(mine[0]["flags"].split(",")) != {"slave"}:
                    return False
            return True
        except (redis.RedisError, KeyError):
            return False

    def wait_settled(self, timeout_s: float = 30.0) -> None:
        if not until(self._steady, timeout_s, 0.05):
            raise TimeoutError(f"Redis HA not settled within {timeout_s} s: {self.describe()}")

    def describe(self) -> str:
        """Who answers as what, and where each sentinel points (for failure messages)."""
        roles = ", ".join(f"{n.name}:{n.port}={n.role()}" for n in self.data)
        masters = ", ".join(f"{s.name}->{self.sentinel_master(s)}" for s in self.sentinels)
        return f"{roles}; {masters}"

    # --- faults ----------------------------------------------------------------------------------

    def kill_primary(self) -> float:
        """SIGKILL the primary; returns ``time.monotonic()`` just before the signal."""
        at = time.monotonic()
        self.primary.kill()
        return at

    def wait_failover(self, timeout_s: float = 30.0) -> HANode:
        """Wait until a sentinel names the replica as the master and it answers as one; from then
        on :attr:`primary` is the promoted node and :attr:`replica` the old (dead) primary."""
        old, candidate = self.primary, self.replica

        def promoted() -> bool:
            named = any(self.sentinel_master(s) == candidate.address for s in self.sentinels)
            return named and candidate.role() == "master"

        if not until(promoted, timeout_s):
            raise TimeoutError(f"no failover within {timeout_s} s: {self.describe()}")
        self.primary, self.replica = candidate, old
        return candidate

    def restart_old_primary_as_replica(self, timeout_s: float = 30.0) -> None:
        """Start the killed primary again as a replica of the new one (its files kept) and wait
        until the set is steady, ready for the next failover."""
        old = self.replica
        if old.alive:
            raise RuntimeError(f"{old.name} is still running")
        old.spawn([f"replicaof {HOST} {self.primary.port}"])
        old.wait_up(timeout_s)
        self.wait_settled(timeout_s)

    # --- for clients -----------------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [s.address for s in self.sentinels]

    def primary_client(self) -> redis.Redis:
        """A decoded client on the current primary (as :meth:`wait_failover` last found it)."""
        return self.primary.client(2.0)

    def env(self) -> dict[str, str]:
        """The BROKERGATE_REDIS_* variables that point a brokergate process at this set through
        the sentinels (docs/architecture.md § Redis)."""
        scheme = "rediss" if self.tls_files else "redis"
        env = {
            # With Sentinel only the URL's scheme (TLS or not) and database count; its host is
            # the master name, for the reader.
            "BROKERGATE_REDIS_URL": f"{scheme}://{self.master_name}/0",
            "BROKERGATE_REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in self.sentinel_addresses),
            "BROKERGATE_REDIS_MASTER": self.master_name,
            "BROKERGATE_REDIS_WAIT_REPLICAS": "1",
        }
        if self.username is not None and self.password is not None:
            # The sentinels admit the same ACL user as the data nodes.
            env.update(BROKERGATE_REDIS_USERNAME=self.username, BROKERGATE_REDIS_PASSWORD=self.password,
                       BROKERGATE_REDIS_SENTINEL_USERNAME=self.username,
                       BROKERGATE_REDIS_SENTINEL_PASSWORD=self.password)  # fmt: skip
        if self.tls_files is not None:
            env["BROKERGATE_REDIS_TLS_CA"] = str(self.tls_files.ca)
            if self.client_certs:
                env["BROKERGATE_REDIS_TLS_CERT"] = str(self.tls_files.client_cert)
                env["BROKERGATE_REDIS_TLS_KEY"] = str(self.tls_files.client_key)
        return env
