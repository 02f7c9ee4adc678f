"""The agent desk over HTTP: conversations, their status, notes and files (``/v1``).

``desk_router`` is included in the ``/v1`` router (bearer token and the role table apply:
``roles.py``).  The store work is synchronous, so the handlers are plain ``def``s that
FastAPI runs in its thread pool.  Refusals are problem bodies (``problems.py``): 404 for an
unknown customer or conversation, 409 for a stale ``expected_version`` or a status change
the conversation's status does not allow, 413/415/422 for a file that is too big, of a type
not accepted, or not what it was sent as.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from channels.email.blobs import BlobNotFound
from services.desk.files import ALLOWED_TYPES, FileRefused
from services.desk.service import (
    AttachedFile,
    ConversationChanged,
    DeskInputError,
    DeskService,
    Note,
    TransitionRefused,
    download_path,
)
from services.domain.desk import MAX_NOTE_CHARS, Conversation, Status, StoredFile

SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
ASSIGNEE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
CONVERSATION_EXAMPLE = "0f8fad5b-d9cb-469f-a165-70867728950e"
CUSTOMER_EXAMPLE = "6fa459ea-ee8a-3ca4-894e-db77e160355e"
SHA_EXAMPLE = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

CustomerId = Annotated[UUID, Path(examples=[CUSTOMER_EXAMPLE])]
ConversationId = Annotated[UUID, Path(examples=[CONVERSATION_EXAMPLE])]
Sha256 = Annotated[str, Path(pattern=SHA256_PATTERN, examples=[SHA_EXAMPLE])]

log = logging.getLogger(__name__)


class ConversationInfo(BaseModel):
    conversation_id: UUID
    customer_id: UUID
    kind: str = Field(
        description="thread (e-mail), chat (SMS, messengers) or call", examples=["chat"]
    )
    channel: str = Field(examples=["sms"])
    party: str = Field(description="The customer's address in it", examples=["+4930123456789"])
    status: Status = Field(examples=["assigned"])
    assignee: str | None = Field(examples=["anna"])
    opened_at: datetime
    last_contact_at: datetime
    contact_count: int = Field(examples=[3])
    version: int = Field(
        description="Send it back as expected_version to change the status (also the ETag)",
        examples=[2],
    )


class Conversations(BaseModel):
    customer_id: UUID
    items: list[ConversationInfo] = Field(description="Newest contact first")


class StatusChange(BaseModel):
    status: Status = Field(
        description="open → assigned | pending | resolved; assigned → open | assigned (hand "
        "over) | pending | resolved; pending → open | assigned | resolved; resolved → open | "
        "assigned",
        examples=["assigned"],
    )
    assignee: str | None = Field(
        None,
        pattern=ASSIGNEE_PATTERN,
        max_length=64,
        description="Needed for assigned; pending and resolved keep the current one",
        examples=["anna"],
    )
    reason: str = Field("", max_length=500, examples=["waiting for the customer's invoice"])
    expected_version: int = Field(
        ge=1,
        le=2**31 - 1,
        description="The version the client saw; 409 when the conversation changed since",
        examples=[1],
    )


class NewNote(BaseModel):
    text: str = Field(
        min_length=1,
        max_length=MAX_NOTE_CHARS,
        description="Plain text",
        examples=["Called back, customer will send the invoice number."],
    )


class NoteInfo(BaseModel):
    note_id: UUID
    customer_id: UUID
    conversation_id: UUID | None
    text: str
    by: str = Field(description="The user who wrote it", examples=["anna"])
    added_at: datetime


class FileInfo(BaseModel):
    sha256: str = Field(examples=[SHA_EXAMPLE])
    customer_id: UUID
    conversation_id: UUID | None
    filename: str = Field(examples=["invoice.pdf"])
    content_type: str = Field(
        description="Judged from the bytes: " + ", ".join(sorted(ALLOWED_TYPES)),
        examples=["application/pdf"],
    )
    size: int = Field(examples=[48213])
    by: str = Field(examples=["anna"])
    attached_at: datetime
    download_path: str = Field(examples=[download_path(UUID(CUSTOMER_EXAMPLE), SHA_EXAMPLE)])


def conversation_info(c: Conversation) -> ConversationInfo:
    return ConversationInfo.model_validate(c, from_attributes=True)


def note_info(n: Note) -> NoteInfo:
    return NoteInfo.model_validate(n, from_attributes=True)


def file_info(f: AttachedFile) -> FileInfo:
    return FileInfo.model_validate(f, from_attributes=True)


def _refused_field(field: str, reason: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": reason}])


async def _uploaded(request: Request, limit: int) -> tuple[bytes, str | None, str | None]:
    """The ``file`` part of a multipart body: its bytes (at most ``limit`` + 1), name and
    claimed type."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + _FORM_OVERHEAD:
        raise HTTPException(
            413,
            f"body.file: the body has {length} bytes; files of at most {limit} bytes are accepted",
        )
    try:
        form = await request.form(max_files=1, max_fields=10)
    except (StarletteHTTPException, MultiPartException) as e:
        reason = getattr(e, "detail", None) or getattr(e, "message", str(e))
        raise HTTPException(400, f"body: cannot read the multipart form ({reason})") from None
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise _refused_field("file", "Field required: a file part named 'file'")
        data = await part.read(limit + 1)  # one byte more tells a file too big
        return data, part.filename, part.content_type
    finally:
        await form.close()


def _by(request: Request) -> str:
    return request.state.caller.username


_ETAG = {
    "ETag": {
        "description": "The conversation's version, quoted",
        "required": True,
        "schema": {"type": "string"},
    }
}
_UNREADABLE = {400: {"description": "The body could not be parsed at all."}}
_NO_CUSTOMER = {404: {"description": "No such customer."}}
_NO_CONVERSATION = {404: {"description": "No such conversation."}}
_UPLOAD_REFUSED: dict[int | str, dict[str, Any]] = {
    413: {"description": "The file is larger than the limit (SWITCHBOARD_DESK_MAX_FILE_BYTES)."},
    415: {"description": "The file's bytes are of a type not accepted."},
    422: {"description": "The file is empty, or its bytes are not the type it was sent as."},
}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The file. Its type is judged from its bytes; a part "
                            "Content-Type other than application/octet-stream must agree.",
                        }
                    },
                },
                "encoding": {"file": {"contentType": ", ".join(sorted(ALLOWED_TYPES))}},
            }
        },
    }
}
# Multipart framing around the file: boundaries, part headers (a generous bound).
_FORM_OVERHEAD = 64 * 1024
_DOWNLOAD_TYPES = {t: {"schema": {"type": "string", "format": "binary"}} for t in ALLOWED_TYPES}


HandedOver = Callable[[Conversation, Conversation, str, str], Awaitable[None]]


def desk_router(desk: DeskService, *, handed_over: HandedOver | None = None) -> APIRouter:
    """The desk's operations, to be included in the ``/v1`` router.  ``handed_over(before,
    after, by, reason)`` is told of a conversation given to an agent (after it was saved)."""
    router = APIRouter()

    @router.get(
        "/customers/{customer_id}/conversations",
        responses=_NO_CUSTOMER,
        tags=["conversations"],
    )
    def list_conversations(customer_id: CustomerId) -> Conversations:
        """The customer's conversations (e-mail threads, chats, calls), newest contact first."""
        items = [conversation_info(c) for c in desk.conversations(customer_id)]
        return Conversations(customer_id=customer_id, items=items)

    @router.get(
        "/conversations/{conversation_id}",
        responses={**_NO_CONVERSATION, 200: {"headers": _ETAG}},
        tags=["conversations"],
    )
    def get_conversation(conversation_id: ConversationId, response: Response) -> ConversationInfo:
        conversation = desk.conversation(conversation_id)
        response.headers["ETag"] = f'"{conversation.version}"'
        return conversation_info(conversation)

    @router.post(
        "/conversations/{conversation_id}/status",
        responses={
            **_UNREADABLE,
            **_NO_CONVERSATION,
            200: {"headers": _ETAG},
            409: {
                "description": "expected_version is not the conversation's version (reload "
                "it), or its status does not allow this change."
            },
        },
        tags=["conversations"],
    )
    async def change_status(
        conversation_id: ConversationId, change: StatusChange, request: Request, response: Response
    ) -> ConversationInfo:
        """Assign, set pending, resolve or reopen a conversation; recorded with who did it.
        A conversation given to an agent is pushed to their console (and taken from the
        previous agent's), through Kafka to whichever gateway they are connected to."""
        by = _by(request)
        try:
            before, changed = await run_in_threadpool(
                desk.change_status_from,
                conversation_id,
                change.status,
                by=by,
                expected_version=change.expected_version,
                assignee=change.assignee,
                reason=change.reason,
            )
        except (ConversationChanged, TransitionRefused) as e:
            raise HTTPException(409, str(e)) from None
        except DeskInputError as e:
            raise _refused_field(e.field, e.reason) from None
        if handed_over is not None and changed.assignee and changed.assignee != before.assignee:
            try:
                await handed_over(before, changed, by, change.reason)
            except Exception as e:  # saved (and on the timeline); only the consoles' news is lost
                log.warning("desk: the hand-over of %s was not pushed: %s", conversation_id, e)
        response.headers["ETag"] = f'"{changed.version}"'
        return conversation_info(changed)

    def add_note(request: Request, note: NewNote, **target: UUID) -> NoteInfo:
        try:
            return note_info(desk.add_note(note.text, by=_by(request), **target))
        except DeskInputError as e:
            raise _refused_field(e.field, e.reason) from None

    @router.post(
        "/customers/{customer_id}/notes",
        status_code=201,
        responses={**_UNREADABLE, **_NO_CUSTOMER},
        tags=["notes and files"],
    )
    def note_on_customer(customer_id: CustomerId, note: NewNote, request: Request) -> NoteInfo:
        """A note on the customer (on its timeline, with who wrote it)."""
        return add_note(request, note, customer_id=customer_id)

    @router.post(
        "/conversations/{conversation_id}/notes",
        status_code=201,
        responses={**_UNREADABLE, **_NO_CONVERSATION},
        tags=["notes and files"],
    )
    def note_on_conversation(
        conversation_id: ConversationId, note: NewNote, request: Request
    ) -> NoteInfo:
        """A note on one conversation."""
        return add_note(request, note, conversation_id=conversation_id)

    async def attach(request: Request, **target: UUID) -> FileInfo:
        # The form is read here rather than as a declared File parameter, so that a body
        # larger than the limit is refused from its Content-Length before it is read.
        data, filename, content_type = await _uploaded(request, desk.max_file_bytes)
        try:
            attached = await run_in_threadpool(
                lambda: desk.attach_file(
                    data,
                    filename=filename,
                    content_type=content_type,
                    by=_by(request),
                    **target,
                )
            )
        except FileRefused as e:
            if e.status == 422:
                raise _refused_field(e.field, e.reason) from None
            raise HTTPException(e.status, f"body.{e.field}: {e.reason}") from None
        return file_info(attached)

    @router.post(
        "/customers/{customer_id}/files",
        status_code=201,
        responses={**_UNREADABLE, **_NO_CUSTOMER, **_UPLOAD_REFUSED},
        openapi_extra=_UPLOAD_BODY,
        tags=["notes and files"],
    )
    async def file_on_customer(customer_id: CustomerId, request: Request) -> FileInfo:
        """Attach a file to the customer: stored by its SHA-256 with the e-mail attachments."""
        return await attach(request, customer_id=customer_id)

    @router.post(
        "/conversations/{conversation_id}/files",
        status_code=201,
        responses={**_UNREADABLE, **_NO_CONVERSATION, **_UPLOAD_REFUSED},
        openapi_extra=_UPLOAD_BODY,
        tags=["notes and files"],
    )
    async def file_on_conversation(conversation_id: ConversationId, request: Request) -> FileInfo:
        """Attach a file to one conversation."""
        return await attach(request, conversation_id=conversation_id)

    download_responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The file, as an attachment, with the type its bytes were judged "
            "to be when attached",
            "content": _DOWNLOAD_TYPES,
            "headers": {
                "Content-Disposition": {"schema": {"type": "string"}, "required": True},
                "X-Content-Type-Options": {"schema": {"type": "string"}, "required": True},
            },
        },
    }

    @router.get(
        "/customers/{customer_id}/files/{sha256}",
        response_class=FileResponse,
        responses={
            **download_responses,
            404: {"description": "No file with this SHA-256 was attached to this customer."},
        },
        tags=["notes and files"],
    )
    def download(customer_id: CustomerId, sha256: Sha256) -> Response:
        """Download a file attached to the customer or one of their conversations, under the
        name it was attached under to them."""
        attached = desk.attached_file(customer_id, sha256.lower())
        return file_response(attached.sha256, attached.content_type, attached.filename)

    @router.get(
        "/files/{sha256}",
        response_class=FileResponse,
        responses={
            **download_responses,
            404: {"description": "No file with this SHA-256 was attached."},
        },
        tags=["notes and files"],
        deprecated=True,
    )
    def download_by_hash(sha256: Sha256) -> Response:
        """Download an attached file by its SHA-256 alone (the links of timelines built
        before the per-customer path).  The file names no one here, so it is served under a
        name made of its hash; its own name is the customer's:
        ``/v1/customers/{customer_id}/files/{sha256}``."""
        stored = desk.stored_file(sha256.lower())
        return file_response(stored.sha256, stored.content_type, neutral_filename(stored))

    def file_response(sha256: str, content_type: str, filename: str) -> Response:
        try:
            data = desk.blobs.get(sha256)
        except BlobNotFound:
            raise HTTPException(
                404, f"the bytes of file {sha256} are not in the blob store (erased?)"
            ) from None
        return Response(
            data,
            media_type=content_type,
            headers={
                "Content-Disposition": content_disposition(filename),
                "X-Content-Type-Options": "nosniff",
            },
        )

    return router


def neutral_filename(stored: StoredFile) -> str:
    """``file-<the first 12 of its hash>.<extension of its type>``: nobody's name."""
    return f"file-{stored.sha256[:12]}{mimetypes.guess_extension(stored.content_type) or ''}"


def content_disposition(filename: str) -> str:
    """An attachment's header, as Starlette's FileResponse writes it (RFC 6266/5987)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'
