"""Which conversation a contact joins (a scenario table), the status rules, and what a file
is judged to be from its bytes.  Pure: no store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from services.desk.files import (
    FileRefused,
    FileTooLarge,
    FileTypeMismatch,
    FileTypeNotAllowed,
    checked_type,
    safe_filename,
)
from services.domain.desk import (
    Contact,
    Conversation,
    CustomerDesk,
    InvalidTransition,
    MissingAssignee,
    StaleConversation,
    Status,
    check_transition,
    place_contact,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GAP = timedelta(hours=24)
PARTY = "+4930123456789"
PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 16


def contact(
    kind: str = "message.received.v1",
    channel: str = "sms",
    *,
    ref: str = "M1",
    direction: str = "inbound",
    at: datetime = T0,
    thread: tuple[str, ...] = (),
    call_id: str | None = None,
    automatic: bool = False,
) -> Contact:
    return Contact(
        key=f"{kind}|{channel}|{ref}",
        notification_id=1,
        interaction_type=kind,
        channel=channel,
        direction=direction,
        party=PARTY,
        provider_ref=ref,
        occurred_at=at,
        thread_keys=thread,
        call_id=call_id,
        automatic=automatic,
    )


def conversation(
    kind: str,
    channel: str,
    *,
    last: datetime = T0,
    status: Status = Status.open,
    thread: tuple[str, ...] = (),
    calls: tuple[str, ...] = (),
    party: str = PARTY,
    cid: UUID | None = None,
) -> Conversation:
    return Conversation(
        conversation_id=cid or uuid4(),
        customer_id=UUID(int=1),
        kind=kind,
        channel=channel,
        party=party,
        status=status,
        assignee=None,
        opened_at=last,
        last_contact_at=last,
        contact_count=1,
        version=1,
        thread_keys=thread,
        call_ids=calls,
    )


MAIL_THREAD = conversation("thread", "email", thread=("<root@x>", "<reply1@us>"))
SMS_CHAT = conversation("chat", "sms", last=T0)
RESOLVED_CHAT = conversation("chat", "whatsapp", status=Status.resolved)
CALL = conversation("call", "voice", calls=("CA1",))
SCENARIOS = [
    # (what happens, the contact, the conversations there are, expected action, which one)
    (
        "a reply joins its e-mail thread by References",
        contact("message.received.v1", "email", thread=("<root@x>",)),
        [MAIL_THREAD],
        "join",
        MAIL_THREAD,
    ),
    (
        "a reply to our answer joins by In-Reply-To",
        contact("message.received.v1", "email", thread=("<reply1@us>",)),
        [MAIL_THREAD],
        "join",
        MAIL_THREAD,
    ),
    (
        "a reply to a thread we do not know opens a new conversation",
        contact("message.received.v1", "email", thread=("<elsewhere@x>",)),
        [MAIL_THREAD],
        "open",
        None,
    ),
    (
        "a new e-mail without references opens one",
        contact("message.received.v1", "email"),
        [MAIL_THREAD],
        "open",
        None,
    ),
    (
        "an SMS within the quiet gap joins the chat",
        contact(at=T0 + GAP - timedelta(minutes=1)),
        [SMS_CHAT],
        "join",
        SMS_CHAT,
    ),
    (
        "an SMS after the quiet gap opens a new chat",
        contact(at=T0 + GAP + timedelta(minutes=1)),
        [SMS_CHAT],
        "open",
        None,
    ),
    (
        "an SMS does not join a WhatsApp chat",
        contact(channel="sms"),
        [RESOLVED_CHAT],
        "open",
        None,
    ),
    (
        "a message within the gap joins a resolved chat (which it reopens)",
        contact(channel="whatsapp"),
        [RESOLVED_CHAT],
        "join",
        RESOLVED_CHAT,
    ),
    (
        "another party's chat is not joined",
        contact(),
        [conversation("chat", "sms", party="+4930999")],
        "open",
        None,
    ),
    (
        "the call's voicemail joins the call by call_id",
        contact("voicemail.recorded.v1", "voice", ref="RE1", call_id="CA1"),
        [CALL],
        "join",
        CALL,
    ),
    (
        "the next call is a conversation of its own",
        contact("call.ringing.v1", "voice", ref="CA2", call_id="CA2"),
        [CALL],
        "open",
        None,
    ),
    (
        "our SMS joins the open chat on its channel",
        contact("message.sent.v1", direction="outbound", at=T0 + 3 * GAP),
        [SMS_CHAT],
        "join",
        SMS_CHAT,
    ),
    (
        "our SMS never opens a conversation",
        contact("message.sent.v1", direction="outbound"),
        [],
        "ignore",
        None,
    ),
    (
        "our message does not join a resolved chat",
        contact("message.sent.v1", "whatsapp", direction="outbound"),
        [RESOLVED_CHAT],
        "ignore",
        None,
    ),
    (
        "our e-mail answer joins its thread",
        contact("message.sent.v1", "email", direction="outbound", thread=("<root@x>",)),
        [MAIL_THREAD],
        "join",
        MAIL_THREAD,
    ),
    (
        "an out-of-office reply never opens a conversation",
        contact("message.received.v1", "email", automatic=True),
        [],
        "ignore",
        None,
    ),
    (
        "a delivery report is no contact",
        contact("delivery.status.v1"),
        [SMS_CHAT],
        "ignore",
        None,
    ),
    (
        "a consent change is no contact",
        contact("consent.changed.v1"),
        [SMS_CHAT],
        "ignore",
        None,
    ),
]


@pytest.mark.parametrize(
    ("contact_", "conversations", "action", "joined"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_a_contact_opens_joins_or_leaves_conversations_as_the_table_says(
    contact_: Contact, conversations: list[Conversation], action: str, joined: Conversation | None
) -> None:
    placement = place_contact(contact_, conversations, quiet_gap=GAP)
    assert placement.action == action, placement.reason
    assert placement.conversation_id == (joined.conversation_id if joined else None)


def test_of_two_matching_threads_the_latest_is_joined() -> None:
    old = conversation("thread", "email", last=T0, thread=("<a@x>",))
    new = conversation("thread", "email", last=T0 + GAP, thread=("<a@x>",))
    placement = place_contact(
        contact("message.received.v1", "email", thread=("<a@x>",)), [old, new], quiet_gap=GAP
    )
    assert placement.conversation_id == new.conversation_id


def desk_with_chat() -> tuple[CustomerDesk, UUID]:
    desk = CustomerDesk(customer_id=UUID(int=7))
    cid = desk.record_contact(contact(), quiet_gap=GAP)
    assert cid is not None
    return desk, cid


def test_a_new_contact_reopens_a_resolved_conversation_as_the_system() -> None:
    desk, cid = desk_with_chat()
    desk.change_status(cid, Status.assigned, by="anna", assignee="anna", expected_version=1)
    desk.change_status(cid, Status.resolved, by="anna", expected_version=2)

    assert desk.record_contact(contact(ref="M2", at=T0 + timedelta(hours=1)), quiet_gap=GAP) == cid

    reopened = desk.conversation(cid)
    assert (reopened.status, reopened.assignee, reopened.version) == (Status.assigned, "anna", 4)
    last = [e for e in desk.collect_events() if isinstance(e, CustomerDesk.Event)][-1]
    assert isinstance(last, CustomerDesk.ConversationStatusChanged)
    assert (last.from_status, last.to_status, last.by) == ("resolved", "assigned", "system")


def test_our_own_reply_does_not_reopen_a_pending_conversation() -> None:
    desk, cid = desk_with_chat()
    desk.change_status(cid, Status.pending, by="anna", expected_version=1)
    desk.record_contact(contact("message.sent.v1", ref="M2", direction="outbound"), quiet_gap=GAP)
    assert desk.conversation(cid).status == Status.pending


@pytest.mark.parametrize(
    ("start", "to", "assignee", "refused"),
    [
        (Status.open, Status.assigned, None, MissingAssignee),
        (Status.open, Status.open, None, InvalidTransition),
        (Status.resolved, Status.pending, None, InvalidTransition),
        (Status.resolved, Status.resolved, None, InvalidTransition),
    ],
)
def test_a_status_change_the_rules_do_not_allow_is_refused(
    start: Status, to: Status, assignee: str | None, refused: type[Exception]
) -> None:
    with pytest.raises(refused):
        check_transition(replace(SMS_CHAT, status=start), to, assignee)


def test_assigning_twice_to_the_same_agent_is_refused_but_a_hand_over_is_not() -> None:
    assigned = replace(SMS_CHAT, status=Status.assigned, assignee="anna")
    with pytest.raises(InvalidTransition, match="assigned to anna already"):
        check_transition(assigned, Status.assigned, "anna")
    assert check_transition(assigned, Status.assigned, "ben") == (Status.assigned, "ben")
    assert check_transition(assigned, Status.open, None) == (Status.open, None)
    assert check_transition(assigned, Status.pending, None) == (Status.pending, "anna")


def test_a_status_change_from_a_stale_version_changes_nothing() -> None:
    desk, cid = desk_with_chat()
    desk.change_status(cid, Status.pending, by="anna", expected_version=1)
    with pytest.raises(StaleConversation, match="at version 2, not 1"):
        desk.change_status(cid, Status.resolved, by="ben", expected_version=1)
    assert desk.conversation(cid).status == Status.pending


def test_thread_keys_are_bounded_to_the_newest() -> None:
    desk = CustomerDesk(customer_id=UUID(int=8))
    cid = desk.record_contact(contact("message.received.v1", "email", ref="<m0@x>"), quiet_gap=GAP)
    for i in range(1, 80):
        joined = desk.record_contact(
            contact("message.received.v1", "email", ref=f"<m{i}@x>", thread=(f"<m{i - 1}@x>",)),
            quiet_gap=GAP,
        )
        assert joined == cid
    keys = desk.conversation(cid).thread_keys
    assert len(keys) == 50 and keys[-1] == "<m79@x>"


# -- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "claimed", "stored_as"),
    [
        (PDF, "application/pdf", "application/pdf"),
        (PNG, "image/png", "image/png"),
        (PNG, "application/octet-stream", "image/png"),
        (PDF, None, "application/pdf"),
        (b"name;amount\nAnn;3\n", "text/csv", "text/csv"),
        ("Grüße\n".encode(), "text/plain; charset=utf-8", "text/plain"),
    ],
)
def test_a_file_is_stored_as_what_its_bytes_are(
    data: bytes, claimed: str | None, stored_as: str
) -> None:
    assert checked_type(data, claimed, max_bytes=1000) == stored_as


@pytest.mark.parametrize(
    ("data", "claimed", "refused", "says"),
    [
        (PNG, "application/pdf", FileTypeMismatch, "sent as application/pdf but its bytes are"),
        (b"plain words", "image/png", FileTypeMismatch, "its bytes are text/plain"),
        (b"PK\x03\x04" + b"\x00" * 40, "application/zip", FileTypeNotAllowed, "application/zip"),
        (b"\x00\x01\x02\xff", None, FileTypeNotAllowed, "no type we recognise"),
        (b"", "text/plain", FileRefused, "empty"),
        (PDF + b"x" * 2000, "application/pdf", FileTooLarge, "at most 1000"),
    ],
)
def test_a_file_whose_bytes_are_not_accepted_is_refused_saying_why(
    data: bytes, claimed: str | None, refused: type[FileRefused], says: str
) -> None:
    with pytest.raises(refused, match=says.replace("(", r"\(")):
        checked_type(data, claimed, max_bytes=1000)


def test_a_file_name_loses_its_folders_and_control_characters() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\temp\\in\x00voice.pdf") == "invoice.pdf"
    assert safe_filename("") == "file"
