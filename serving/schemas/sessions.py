"""Shapes of the session-based recommendation responses."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from serving.schemas.base import PLAIN_INT
from serving.schemas.recommendations import ModelInfo, RecommendedProduct, SessionInfo


class SessionPageQuery(BaseModel):
    """Query parameters of the session recommendations endpoint."""

    n: Annotated[int, PLAIN_INT] = Field(default=10, ge=1, le=100, description="Products on the page.")
    category: str | None = Field(default=None, description="Only this category and its sub-categories.")
    fulfillment: Literal["bonded", "direct_mail"] | None = Field(
        default=None, description="`bonded`: fast-delivery goods only."
    )


class SessionRecommendationPage(BaseModel):
    session_id: str
    items: list[RecommendedProduct]
    model: ModelInfo = Field(description="The session model served (or the popularity fallback).")
    session: SessionInfo
