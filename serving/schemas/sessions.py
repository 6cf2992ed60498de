"""Shapes of the session-based recommendation responses."""

from __future__ import annotations

from pydantic import BaseModel, Field

from serving.schemas.recommendations import ModelInfo, RecommendedProduct, SessionInfo


class SessionRecommendationPage(BaseModel):
    session_id: str
    items: list[RecommendedProduct]
    model: ModelInfo = Field(description="The session model served (or the popularity fallback).")
    session: SessionInfo
