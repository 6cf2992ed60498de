"""A tiny marketplace in a fresh database, a scripted model registry and one API key per role."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import commerce.all_models  # noqa: F401  (every table on the metadata)
from commerce.catalog import Category, Product, Stock
from commerce.db import Base, make_engine, make_session_factory, transaction
from commerce.events import BehaviorEvent
from commerce.identity import Keyring, check_char
from commerce.logistics import LogisticsPartner, Warehouse
from commerce.merchants import BrandAuthorization, Merchant
from commerce.promotions import SponsoredPlacement
from commerce.services.access import create_api_key
from commerce.services.checkout import CartLine, checkout
from commerce.services.coupons import CouponInput, create_coupon, grant_coupon
from commerce.services.orders import pay_order
from commerce.services.shoppers import create_shopper, register_identity
from commerce.shoppers import Shopper
from crosscart.settings import Settings
from serving import fastpath
from serving.app import create_app

NOW = datetime.now(UTC)
IDENTITY_KEY = "test-identity-key"


class TinyRecommender:
    """A recommender with fixed scores: item i scores `scores[i]` for every known shopper."""

    name = "tiny"

    def __init__(self, scores: dict[str, float], known: set[str], similar: dict[str, list] | None = None):
        self.scores, self.known, self.similar = scores, known, similar or {}

    def recommend(self, user_ids, n=10, exclude_seen=True, candidates=None):
        ranked = sorted(self.scores.items(), key=lambda kv: -kv[1])[:n]
        return [ranked if u in self.known else [] for u in user_ids]

    def similar_items(self, item_id, n=10):
        return self.similar.get(item_id, [])[:n]

    def knows_user(self, user_id):
        return user_id in self.known

    def scored_items(self):  # Recommender's default: no single-row scoring, rank through `recommend`
        return None


@dataclass
class ScriptedSource:
    """A registry whose alias and artifacts the test controls; `broken` versions fail to load."""

    versions: dict[str, object] = field(default_factory=dict)
    alias: str | None = None
    broken: set[str] = field(default_factory=set)
    loads: int = 0
    others: dict[str, str] = field(default_factory=dict)  # other aliases (a challenger) -> version

    def champion(self):
        return self.alias

    def load(self, version):
        self.loads += 1
        if version in self.broken:
            raise OSError(f"artifact of version {version} is corrupt")
        return self.versions[version]

    def for_alias(self, alias):
        return AliasView(self, alias)


@dataclass
class AliasView:
    """The scripted registry read through another alias."""

    registry: ScriptedSource
    alias: str

    def champion(self):
        return self.registry.others.get(self.alias)

    def load(self, version):
        return self.registry.load(version)


def seed_marketplace(factory) -> None:
    """Products p01..p12 over two leaf categories; each rule has a product that must never show."""
    with transaction(factory) as s:
        s.add_all(
            [
                Category(category_id="root", name="All"),
                Category(category_id="beauty", parent_id="root", name="Beauty", repurchasable=True),
                Category(category_id="toys", parent_id="root", name="Toys", repurchasable=False),
                LogisticsPartner(partner_id="lp1", name="Fast", mode="bonded", min_days=1, max_days=3),
            ]
        )
        s.add_all(
            [
                Merchant(
                    merchant_id=m,
                    name=m,
                    country="JP",
                    licence_no=f"L-{m}",
                    status=st,
                    brands=[BrandAuthorization(brand="B")],
                )
                for m, st in [("m1", "approved"), ("m2", "approved"), ("m3", "pending"), ("m4", "suspended")]
            ]
        )
        s.add_all([Shopper(shopper_id=f"s{i}", region="east") for i in (1, 2, 3)])
        s.add(LogisticsPartner(partner_id="lp2", name="Post", mode="direct_mail", min_days=4, max_days=7))
        s.add(Warehouse(warehouse_id="wh1", name="Bonded zone", mode="bonded", partner_id="lp1"))
        s.add(Warehouse(warehouse_id="ow1", name="Overseas", mode="direct_mail", partner_id="lp2"))
        s.flush()
        for shopper, first17 in [("s1", "11010519491231002"), ("s2", "44030419900101123")]:
            register_identity(
                s, shopper, f"Name {shopper}", first17 + check_char(first17), keyring=Keyring(IDENTITY_KEY)
            )
        # id: (merchant, category, fulfillment, status, stock)
        spec = {
            "p01": ("m1", "beauty", "bonded", "listed", 5),
            "p02": ("m1", "beauty", "direct_mail", "listed", 5),
            "p03": ("m1", "toys", "bonded", "listed", 5),
            "p04": ("m1", "toys", "direct_mail", "listed", 5),
            "p05": ("m2", "beauty", "bonded", "listed", 5),
            "p06": ("m2", "toys", "bonded", "listed", 5),
            "p07": ("m2", "toys", "direct_mail", "listed", 5),
            "p08": ("m2", "beauty", "direct_mail", "listed", 5),
            "p09": ("m3", "beauty", "bonded", "listed", 5),  # merchant pending
            "p10": ("m4", "beauty", "bonded", "listed", 5),  # merchant suspended
            "p11": ("m1", "beauty", "bonded", "delisted", 5),
            "p12": ("m2", "beauty", "bonded", "listed", 0),  # out of stock
        }
        for pid, (m, cat, ful, st, qty) in spec.items():
            s.add(
                Product(
                    product_id=pid,
                    sku=f"SKU-{pid}",
                    merchant_id=m,
                    title=f"Product {pid}",
                    category_id=cat,
                    brand="B",
                    origin_country="JP" if m == "m1" else "KR",
                    price=Decimal("99.50"),
                    fulfillment=ful,
                    status=st,
                )
            )
            s.flush()
            location = "wh1" if ful == "bonded" else "ow1"
            s.add(Stock(product_id=pid, location=location, quantity=qty, reserved=0))
        s.flush()
        # s1 bought p03 (toys: not repurchasable) and p01 (beauty: repurchasable): order 1, paid.
        order = checkout(s, "s1", [CartLine("p03", 1), CartLine("p01", 1)])
        pay_order(s, order.order_id, "PAY-0")
        # Popularity: p05 > p06 > p07 > ... recently; p08 sold a lot long ago. Rankings count distinct
        # registered shoppers, so each product's buyers are different people (a loaded history).
        s.add_all(
            Shopper(shopper_id=f"crowd-{k}", region="west")
            for k in [*map(str, range(10)), *(f"old-{i}" for i in range(20))]
        )
        events = []
        for rank, pid in enumerate(["p05", "p06", "p07", "p02", "p04", "p09", "p10", "p11", "p12"]):
            for k in range(10 - rank):
                events.append(
                    BehaviorEvent(
                        event_id=f"e-{pid}-{k}",
                        ts=NOW - timedelta(hours=2),
                        shopper_id=f"crowd-{k}",
                        product_id=pid,
                        event_type="purchase",
                        quantity=1,
                        value=99.5,
                    )
                )
        events += [
            BehaviorEvent(
                event_id=f"old-{k}",
                ts=NOW - timedelta(days=60),
                shopper_id=f"crowd-old-{k}",
                product_id="p08",
                event_type="purchase",
                quantity=3,
                value=298.5,
            )
            for k in range(20)
        ]
        s.add_all(events)
        create_coupon(s, CouponInput(kind="amount_off", value="10", min_spend="50", coupon_id="c-10off"))
        create_coupon(
            s,
            CouponInput(
                kind="percent_off",
                value="0.2",
                cap="30",
                scope_type="category",
                scope_id="beauty",
                coupon_id="c-beauty20",
            ),
        )
        create_coupon(s, CouponInput(kind="amount_off", value="50", requires_grant=True, coupon_id="c-vip"))
        grant_coupon(s, "c-vip", ["s2"])
        s.add(
            SponsoredPlacement(
                merchant_id="m2",
                product_id="p08",
                slot="recs",
                starts_at=NOW - timedelta(days=1),
                ends_at=NOW + timedelta(days=1),
                spend=Decimal("500.00"),
            )
        )


ROLE_BINDINGS = {
    "storefront": {},
    "shopper": {"shopper_id": "s1"},
    "merchant": {"merchant_id": "m1"},
    "marketer": {},
    "data_scientist": {},
    "admin": {},
}


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """The seeded marketplace, built once; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("template") / "api.db"
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    seed_marketplace(make_session_factory(engine))
    engine.dispose()
    return path


@pytest.fixture
def session_factory(tmp_path, template_db):
    shutil.copy(template_db, tmp_path / "api.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'api.db'}")
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def keys(session_factory) -> dict[str, str]:
    """role -> plaintext key; plus `shopper2` (bound to s2) and `merchant2` (bound to m2)."""
    out = {}
    with transaction(session_factory) as s:
        for role, binding in ROLE_BINDINGS.items():
            out[role] = create_api_key(s, role, **binding)[1]
        out["shopper2"] = create_api_key(s, "shopper", shopper_id="s2")[1]
        out["merchant2"] = create_api_key(s, "merchant", merchant_id="m2")[1]
    return out


@pytest.fixture
def source() -> ScriptedSource:
    scores = {f"p{i:02d}": 1.0 - i / 100 for i in range(1, 13)}  # p01 best ... p12 worst
    similar = {"p05": [("p06", 0.9), ("p09", 0.8), ("p02", 0.7)]}
    return ScriptedSource(versions={"1": TinyRecommender(scores, {"s1", "s2"}, similar)}, alias="1")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        rate_limit_per_minute=10_000,
        rate_limit_anonymous_per_minute=10_000,
        merchant_applications_per_hour=10_000,
        identity_key=IDENTITY_KEY,
    )


@pytest.fixture
def make_client(settings, session_factory, source):
    clients = []

    def build(**overrides) -> TestClient:
        app_settings = overrides.pop("settings", settings)
        kwargs = dict(
            session_factory=session_factory,
            model_source=source,
            uplift_source=ScriptedSource(),
            delivery_source=ScriptedSource(),
            start_background=False,
        )
        kwargs.update(overrides)
        client = TestClient(create_app(app_settings, **kwargs))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


LOOPBACK = ("127.0.0.1", 50000)  # a client address CROSSCART_METRICS_ALLOW admits by default


def scrape(client: TestClient) -> str:
    """`/metrics` of `client`'s app (started by `client`), read from the loopback like a local scraper."""
    response = TestClient(client.app, client=LOOPBACK).get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def grant_only_campaign(
    client: TestClient, marketer: dict[str, str], factory, name: str, coupon_id: str
) -> str:
    """A draft email campaign `name` (budget 500, half held out) with one grant-only coupon `coupon_id`
    (20 off 100), and shoppers s4-s40 beside the seeded ones: what a plan's candidates can name."""
    with transaction(factory) as s:
        for i in range(4, 41):
            create_shopper(s, f"s{i}", "east")
    window = {"starts_at": NOW.isoformat(), "ends_at": (NOW + timedelta(days=7)).isoformat()}
    made = client.post(
        "/v1/campaigns",
        json={"name": name, "channel": "email", "budget": "500.00", "control_share": "0.5", **window},
        headers=marketer,
    )
    assert made.status_code == 201, made.text
    campaign_id = made.json()["campaign_id"]
    with transaction(factory) as s:
        coupon = CouponInput(
            kind="amount_off", value="20", min_spend="100", campaign_id=campaign_id, requires_grant=True,
            coupon_id=coupon_id,
        )  # fmt: skip
        create_coupon(s, coupon)
    return campaign_id


@pytest.fixture
def answered(monkeypatch) -> list:
    """What the fast path returned for each request it was asked about (None: FastAPI answered)."""
    seen: list = []
    original = fastpath.RecommendationFastPath.answer

    async def spy(self, scope):
        seen.append(await original(self, scope))
        return seen[-1]

    monkeypatch.setattr(fastpath.RecommendationFastPath, "answer", spy)
    return seen
