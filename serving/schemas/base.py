"""The base of every request body: unknown fields are refused (422), never silently dropped.

Mass assignment starts with a field the server did not expect; refusing unknown fields makes such attempts
visible, and what a known field may be set by is decided by serving.field_access.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
