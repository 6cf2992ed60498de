"""Demo API keys: one per role, written with sample ids to `demo-keys.json` for people trying the API.

Re-running keeps the keys already in the file that still authenticate (plaintext cannot be recovered
from the database, so the file is the only copy) and creates only what is missing.

The file is written whole, mode 600 whatever the umask (`commerce.files.atomic_path`), inside the
transaction that creates the keys and published after it commits: a write that fails (a full disk)
rolls the new keys back and leaves the previous file whole (it was truncated, and written 664 under
umask 002); a commit that fails leaves the previous file too, its keys still valid. Only the rename
after a commit can fail with keys stored but not written: their plaintext is lost, so they are unusable,
and the next run, not finding them in the file, creates others. Committing first, then writing, left
that state on every failed write; writing, then committing, left a file of keys that do not exist.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from commerce.campaigns import Campaign
from commerce.catalog import Product
from commerce.db import transaction
from commerce.files import atomic_path
from commerce.merchants import Merchant
from commerce.orders import COUNTED_STATUSES, Order
from commerce.services.access import authenticate, create_api_key
from commerce.services.audit import record
from crosscart.cli.audit import OPERATOR

FILE_NAME = "demo-keys.json"


def _sample_ids(session: Session) -> dict:
    shoppers = session.scalars(
        select(Order.shopper_id)
        .where(Order.status.in_(COUNTED_STATUSES))
        .group_by(Order.shopper_id)
        .order_by(func.count().desc(), Order.shopper_id)
        .limit(2)
    ).all()
    merchant = session.scalar(
        select(Merchant.merchant_id)
        .join(Product, Product.merchant_id == Merchant.merchant_id)
        .where(Merchant.status == "approved", Product.status == "listed")
        .group_by(Merchant.merchant_id)
        .order_by(func.count().desc(), Merchant.merchant_id)
        .limit(1)
    )
    product = None
    if merchant is not None:
        product = session.scalar(
            select(Product.product_id)
            .where(Product.merchant_id == merchant, Product.status == "listed")
            .order_by(Product.product_id)
            .limit(1)
        )
    campaign = session.scalar(select(Campaign.campaign_id).order_by(Campaign.campaign_id).limit(1))
    return {"shoppers": list(shoppers), "merchant": merchant, "product": product, "campaign": campaign}


def create_demo_keys(session_factory: sessionmaker[Session], data_dir: str | Path) -> dict:
    """Keys for storefront, marketer, data scientist, admin, two shoppers with purchases and one merchant;
    returns the written document:
    {"keys": {label: {"role", "key", "shopper_id"?, "merchant_id"?}}, "samples": {...}}."""
    path = Path(data_dir) / FILE_NAME
    previous = json.loads(path.read_text()).get("keys", {}) if path.exists() else {}
    with atomic_path(path, mode=0o600) as tmp, transaction(session_factory) as session:  # see the module
        samples = _sample_ids(session)
        wanted: dict[str, dict] = {
            "storefront": {"role": "storefront"},
            "marketer": {"role": "marketer"},
            "data_scientist": {"role": "data_scientist"},
            "admin": {"role": "admin"},
        }
        for i, shopper in enumerate(samples["shoppers"], start=1):
            wanted[f"shopper{i}"] = {"role": "shopper", "shopper_id": shopper}
        if samples["merchant"] is not None:
            wanted["merchant"] = {"role": "merchant", "merchant_id": samples["merchant"]}
        keys = {}
        for label, spec in wanted.items():
            old = previous.get(label)
            if old and {k: old.get(k) for k in spec} == spec:
                found = authenticate(session, old["key"])
                if found is not None and found.role == spec["role"]:
                    keys[label] = old
                    continue
            binding = {k: v for k, v in spec.items() if k != "role"}
            key, plaintext = create_api_key(session, spec["role"], name=f"demo {label}", **binding)
            record(session, "api_key.created", "api_key", key.id, actor_role=OPERATOR, detail=spec)
            keys[label] = {**spec, "key": plaintext}
        document = {"keys": keys, "samples": samples}
        tmp.write_text(json.dumps(document, indent=2) + "\n")
    return document


def sample_key_lines(document: dict) -> list[str]:
    """What the demo may print: every non-admin key with its binding. The admin key is never printed
    (stdout is often logged); it is only in the keys file."""
    lines = []
    for label, spec in document["keys"].items():
        if spec["role"] == "admin":
            continue
        bound = spec.get("shopper_id") or spec.get("merchant_id")
        lines.append(f"{label} ({spec['role']}{f' {bound}' if bound else ''}): {spec['key']}")
    return lines
