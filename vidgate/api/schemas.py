"""Response and request shapes, for the OpenAPI document at /docs (handlers write JSON directly)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    id: str = Field(examples=["video_4f1c0d3e9b8a47c6a1e2f3d4c5b6a7e8"])
    object: Literal["video"] = "video"
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None
    expires_at: int | None
    seconds: str
    size: str
    prompt: str | None
    remixed_from_video_id: str | None
    error: VideoError | None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedVideo(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str
    modes: list[str]
    seconds: list[str]
    sizes: list[str]
    default_size: str
    audio: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


_CREATE_FIELDS: dict[str, Any] = {
    "prompt": {"type": "string", "description": "What the video shows (required)."},
    "model": {"type": "string", "description": "A model from GET /v1/models; defaults to the configured one."},
    "seconds": {"type": "string", "description": "Length in seconds, as the model allows (string or integer)."},
    "size": {"type": "string", "description": "WxH, W*H, or a tier 480P/720P/1080P."},
    "resolution": {"type": "string", "description": "A tier (480P/720P/1080P); alias of a tier size."},
    "metadata": {"type": "string", "description": "JSON object (or JSON string) of provider extras."},
}
CREATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    **_CREATE_FIELDS,
                    "input_reference": {"type": "string", "format": "binary", "description": "First-frame image."},
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    **_CREATE_FIELDS,
                    "metadata": {"type": "object", "description": "Provider extras."},
                    "input_reference": {
                        "description": "An image URL or data: URI, or {image_url}.",
                        "oneOf": [
                            {"type": "string"},
                            {"type": "object", "properties": {"image_url": {"type": "string"}}},
                        ],
                    },
                },
            }
        },
    },
}
REMIX_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}}
        },
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}}
        },
    },
}
