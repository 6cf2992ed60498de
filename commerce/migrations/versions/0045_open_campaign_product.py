"""one open keyword campaign per product, held by the database

A product may be in one of its merchant's keyword campaigns not ended (`ads.MAX_OPEN_CAMPAIGNS_PER_PRODUCT`,
409 `product_already_promoted`), but only campaign creation checked it, and rows written before that
check can hold a product in several open campaigns (each entering every matching search's auction with
it). Each such product is kept in one of them and taken out of the others: an active campaign before a
paused one (what is shown in search stays shown), then the most recently created, then the greatest
campaign id; ended campaigns keep their rows. A campaign may be left promoting nothing (it then enters
no auction; the merchant ends it or keeps it). `campaign_open` (false for an ended campaign's rows) and
a unique index on the product among open rows then hold the rule in the database.

Revision ID: 0045_open_campaign_product
Revises: 0044_ad_impression_recent_index
Create Date: 2026-12-03 21:00:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0045_open_campaign_product"
down_revision: str | None = "0044_ad_impression_recent_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_keyword_campaign_products_open_product"
OPEN = sa.text("campaign_open")
# Each open row ranked among the product's open rows: rank 1 is kept.
RANKED = """
SELECT kcp.campaign_id, kcp.product_id, ROW_NUMBER() OVER (
    PARTITION BY kcp.product_id
    ORDER BY CASE WHEN kc.status = 'active' THEN 0 ELSE 1 END, kc.created_at DESC, kc.campaign_id DESC
) AS place
FROM keyword_campaign_products kcp JOIN keyword_campaigns kc ON kc.campaign_id = kcp.campaign_id
WHERE kc.status <> 'ended'
"""


def upgrade() -> None:
    with op.batch_alter_table("keyword_campaign_products", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("campaign_open", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE keyword_campaign_products SET campaign_open = false WHERE campaign_id IN"
            " (SELECT campaign_id FROM keyword_campaigns WHERE status = 'ended')"
        )
    )
    extra = [
        {"campaign_id": c, "product_id": p}
        for c, p, place in bind.execute(sa.text(RANKED)).all()
        if place > 1
    ]
    if extra:
        bind.execute(
            sa.text(
                "DELETE FROM keyword_campaign_products"
                " WHERE campaign_id = :campaign_id AND product_id = :product_id"
            ),
            extra,
        )
        logging.getLogger("alembic.runtime.migration").warning(
            "took %d products out of keyword campaigns that another open campaign also promoted: %s",
            len(extra),
            ", ".join(f"{r['product_id']} from {r['campaign_id']}" for r in extra[:20]),
        )
    op.create_index(
        INDEX,
        "keyword_campaign_products",
        ["product_id"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    """The rows taken out on upgrade are not put back."""
    op.drop_index(INDEX, table_name="keyword_campaign_products")
    with op.batch_alter_table("keyword_campaign_products", schema=None) as batch_op:
        batch_op.drop_column("campaign_open")
