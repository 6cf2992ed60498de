"""The serving test marketplace on SQLite and PostgreSQL, and an app factory sized for fault tests."""

from __future__ import annotations

import asyncio
import gc
import shutil
import subprocess
import sys
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, make_url, select, update
from sqlalchemy.orm import sessionmaker

import commerce.all_models  # noqa: F401  (every table on the metadata)
from bench.faultkit import TcpProxy
from commerce.catalog import Stock
from commerce.coupons import Coupon, CouponRedemption
from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.identity import Keyring
from commerce.orders import Order, OrderLine
from commerce.services import shoppers
from commerce.services.access import create_api_key
from commerce.services.coupons import CouponInput, create_coupon
from crosscart.settings import Settings
from serving.app import create_app
from serving.http import PROTOCOL, HeaderTimeoutH11Protocol
from serving.http_httptools import HeaderTimeoutHttpToolsProtocol
from serving.resilience import AUTH_CONNECTIONS, BACKGROUND_CONNECTIONS
from tests.commerce.conftest import _postgres_ddl, make_id_number
from tests.serving.conftest import IDENTITY_KEY, ScriptedSource, TinyRecommender, seed_marketplace


@pytest.fixture(params=[HeaderTimeoutHttpToolsProtocol, HeaderTimeoutH11Protocol], ids=["httptools", "h11"])
def http_protocol(request):
    """Each of serving.http's protocols: `crosscart serve`'s (httptools) and its fallback (h11)."""
    return request.param


@contextmanager
def running_server(app, port: int, **config):
    """`app` under `crosscart serve`'s HTTP protocol (or `http=`) on 127.0.0.1:`port`, in a thread, for
    the block."""
    config = {"http": PROTOCOL, **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=5)


POOL_SLOTS = 3  # request slots: small, so a few concurrent requests already queue for them

# This process's SQLite file of `_seed`'s rows, made once by `seeded_template` (each xdist worker its own)
_SQLITE_TEMPLATE: list[Path] = []


def _seed(factory) -> None:
    """The serving test marketplace (products p01..p12, shoppers s1..s3) and a capped coupon."""
    seed_marketplace(factory)
    with transaction(factory) as s:
        create_coupon(
            s,
            CouponInput(
                kind="percent_off", value="0.1", cap="5", usage_limit=100, coupon_id="c-capped", min_spend="0"
            ),
        )


@pytest.fixture(scope="session", autouse=True)
def seeded_template(tmp_path_factory) -> Path:
    """`_seed`'s SQLite database, made once: `seeded_factory` copies it instead of creating the schema
    and seeding per test (about 0.3 s of CPU and many disk syncs each)."""
    path = tmp_path_factory.mktemp("resilience-template") / "seeded.db"
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    _seed(make_session_factory(engine))
    engine.dispose()  # the last connection's close checkpoints the WAL into the file
    _SQLITE_TEMPLATE[:] = [path]
    return path


def seeded_factory(
    url: str,
    slots: int = POOL_SLOTS,
    buyers: int = 0,
    stock: int = 10,
    lock_timeout: float | None = None,
    statement_timeout: float = 20,
):
    """`_seed`'s rows, and `buyers` more shoppers b0.. with identities; product p01 has `stock` units.
    A SQLite database starts as a copy of `seeded_template` when this process has made one."""
    template = url.startswith("sqlite") and _SQLITE_TEMPLATE
    if template:
        shutil.copy(_SQLITE_TEMPLATE[0], make_url(url).database)
    # The rows are written under the default timeouts: a 1 s idle-in-transaction timeout (a test's
    # `statement_timeout=1`) ended the seeding checkout on a loaded host, before the test began.
    setup = make_engine(url)
    if setup.dialect.name == "postgresql":
        with setup.begin() as conn:
            conn.exec_driver_sql(_postgres_ddl())
    elif not template:
        Base.metadata.create_all(setup)
    setup_factory = make_session_factory(setup)
    if not template:
        _seed(setup_factory)
    with transaction(setup_factory) as s:
        s.execute(update(Stock).where(Stock.product_id == "p01").values(quantity=stock))
        for i in range(buyers):
            shoppers.create_shopper(s, f"b{i}", "Shanghai")
            shoppers.register_identity(
                s, f"b{i}", f"Buyer {i}", make_id_number(500 + i), keyring=Keyring(IDENTITY_KEY)
            )
    setup.dispose()
    engine = make_engine(
        url,
        pool_size=slots + AUTH_CONNECTIONS + BACKGROUND_CONNECTIONS,
        max_overflow=0,
        pool_timeout=5,
        statement_timeout=statement_timeout,
        lock_timeout=lock_timeout,
    )
    return make_session_factory(engine)


@pytest.fixture
def limited_role(database_url):
    """(the seeded database's factory, a login role granted its rows); the role dropped afterwards."""
    factory = seeded_factory(database_url)
    admin = factory.kw["bind"]
    role = f"cc_limited_{uuid.uuid4().hex[:8]}"
    schema = make_url(database_url).query["options"].split("=", 1)[1]
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
        conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE test TO {role}")
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        conn.exec_driver_sql(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
        conn.exec_driver_sql(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}')
    yield factory, role
    with admin.begin() as conn:
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )
        conn.exec_driver_sql(f"DROP OWNED BY {role}")
        conn.exec_driver_sql(f"DROP ROLE {role}")
    admin.dispose()


def proxied_engine(database_url: str, port: int, statement_timeout: float):
    """(proxy, engine): a TcpProxy on 127.0.0.1:`port` to the PostgreSQL server of `database_url`, and an
    engine sized as `seeded_factory`'s that reaches the server only through it (quick to give up)."""
    url = make_url(database_url)
    proxy = TcpProxy(port, url.host or "127.0.0.1", url.port or 5432)
    engine = make_engine(
        url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
        connect_timeout=2,
        statement_timeout=statement_timeout,
        pool_size=POOL_SLOTS + AUTH_CONNECTIONS + BACKGROUND_CONNECTIONS,
        max_overflow=0,
        pool_timeout=2,
    )
    return proxy, engine


def make_keys(factory, buyers: int = 0) -> dict[str, str]:
    """Keys for admin, storefront, marketer, s1, s2 and buyers b0.. (by shopper id)."""
    with transaction(factory) as s:
        keys = {role: create_api_key(s, role)[1] for role in ("admin", "storefront", "marketer")}
        for shopper in ["s1", "s2"] + [f"b{i}" for i in range(buyers)]:
            keys[shopper] = create_api_key(s, "shopper", shopper_id=shopper)[1]
        return keys


def invariants(factory) -> dict[str, object]:
    """What must hold whatever happened to the requests: stock = initial - paid units is checked by the
    callers; here reserved units = units on pending orders, coupon uses = redemptions <= limit."""
    with factory() as s:
        pending_units = s.scalar(
            select(func.coalesce(func.sum(OrderLine.quantity), 0))
            .join(Order, Order.order_id == OrderLine.order_id)
            .where(Order.status == "pending_payment", OrderLine.product_id == "p01")
        )
        stock = s.scalar(select(Stock).where(Stock.product_id == "p01"))
        coupon = s.get(Coupon, "c-capped")
        redemptions = s.scalar(
            select(func.count()).select_from(CouponRedemption).where(CouponRedemption.coupon_id == "c-capped")
        )
        orders = s.scalar(select(func.count()).select_from(Order).where(Order.shopper_id.like("b%")))
        return {
            "orders": orders,
            "reserved": stock.reserved,
            "pending_units": pending_units,
            "coupon_used": coupon.used,
            "redemptions": redemptions,
            "usage_limit": coupon.usage_limit,
        }


def recommender_source() -> ScriptedSource:
    scores = {f"p{i:02d}": 1.0 - i / 100 for i in range(1, 13)}
    return ScriptedSource(versions={"1": TinyRecommender(scores, {"s1", "s2"})}, alias="1")


def fault_settings(tmp_path, **overrides) -> Settings:
    values = dict(
        data_dir=tmp_path,
        rate_limit_per_minute=100_000,
        rate_limit_anonymous_per_minute=100_000,
        identity_key=IDENTITY_KEY,
        db_pool_size=POOL_SLOTS,
    )
    values.update(overrides)
    return Settings(**values)


def fault_app(settings: Settings, factory, start_background: bool = False, **kwargs):
    """The app a fault test runs: the scripted recommender unless `model_source` is given, no uplift."""
    return create_app(
        settings,
        session_factory=factory,
        model_source=kwargs.pop("model_source", None) or recommender_source(),
        uplift_source=ScriptedSource(),
        start_background=start_background,
        **kwargs,
    )


def faulty_sessions(factory, session_class):
    """`factory`'s database through sessions of `session_class` (one that fails at COMMIT, say)."""
    return sessionmaker(bind=factory.kw["bind"], class_=session_class, expire_on_commit=False)


@pytest.fixture
def open_client():
    clients = []

    def build(settings: Settings, factory, **kwargs) -> TestClient:
        client = TestClient(fault_app(settings, factory, **kwargs))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@contextmanager
def own_redis_server(port: int, directory: Path, *options: str):
    """A redis-server of this test's own on 127.0.0.1:`port` (no persistence, `options` added), and a
    client to it once it answers; stopped after the block. Skips without redis-server."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), *options],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=2)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def collection_paused():
    """The cyclic garbage collector off for the block. A full collection of a test worker's heap (1.2
    million objects after the serving tests, measured) stops every thread for up to 3 s, and a bound on
    how long one request may wait for another would pass or fail by when it struck."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class LoopWatch:
    """What holds an event loop while the code under test runs on it. `sample(until)`, a task on that loop,
    records how late a 10 ms timer fires (`lags`). While the watch is entered: the cyclic garbage collector
    is off, since a full collection of this test process's heap stops every thread for 0.2-1.6 s on a
    loaded host and would pass for a blocking call; a watchdog thread keeps the loop thread's stack each
    time a tick is `late` seconds overdue (`stacks`: a blocking call lets it run, and shows where); and an
    audit hook keeps each blocking socket call (a connect on a socket with a timeout, a DNS lookup) made
    on the loop thread (`blocking`), however briefly it blocked."""  # (the collector: `collection_paused`)

    _current: LoopWatch | None = None
    _hooked = False

    def __init__(self, late: float) -> None:
        self.late = late
        self.lags: list[float] = []
        self.stacks: list[str] = []
        self.blocking: list[str] = []
        self._loop_thread: int | None = None
        self._tick = time.monotonic()
        self._done = threading.Event()

    async def sample(self, until: float) -> None:
        self._loop_thread = threading.get_ident()
        while time.monotonic() < until and not self._done.is_set():
            expected = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            self._tick = time.monotonic()
            self.lags.append(self._tick - expected)

    def report(self) -> str:
        stacks = "\n".join(self.stacks)
        return f"worst lag {max(self.lags, default=0):.3f} s; the loop thread while late:\n{stacks}"

    def __enter__(self) -> LoopWatch:
        if not LoopWatch._hooked:  # once per process: an audit hook cannot be removed
            sys.addaudithook(LoopWatch._hook)
            LoopWatch._hooked = True
        self._paused = collection_paused()
        self._paused.__enter__()
        LoopWatch._current = self
        threading.Thread(target=self._watchdog, name="loop-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        LoopWatch._current = None
        self._paused.__exit__(None, None, None)

    def _watchdog(self) -> None:
        seen = None
        while not self._done.wait(self.late / 4):
            tick = self._tick
            if self._loop_thread is not None and tick != seen and time.monotonic() - tick > self.late:
                seen = tick
                frame = sys._current_frames().get(self._loop_thread)
                self.stacks.append("".join(traceback.format_stack(frame)[-8:]) if frame else "(gone)")

    @staticmethod
    def _hook(event: str, args: tuple) -> None:
        watch = LoopWatch._current
        if watch is None or threading.get_ident() != watch._loop_thread:
            return
        if event == "socket.getaddrinfo" or (event == "socket.connect" and args[0].gettimeout() != 0.0):
            where = "".join(traceback.format_stack()[-8:])  # asyncio's own sockets never block
            watch.blocking.append(f"{event} {args[1] if event == 'socket.connect' else args[:2]!r}\n{where}")


class FakeTransport(asyncio.Transport):
    """What a uvicorn protocol writes, kept in `written`, with no socket behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 18104)}.get(name, default)

    def write(self, data) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
