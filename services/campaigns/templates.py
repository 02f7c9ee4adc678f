"""A campaign's message templates: one per channel and language, rendered with jinja2.

Templates are written by campaign managers, so they run in jinja2's ``SandboxedEnvironment``
(no attribute walks into Python internals) with ``StrictUndefined`` (a field the recipient
lacks is an error, never an empty string in a customer's message; ``{{ first_name |
default("there") }}`` is how a template says what to write instead).

The fields a template may use (``RECIPIENT_FIELDS``), all strings:

- ``name``: the profile's name; ``first_name``: its first word
- ``tier``, ``language``: from the profile
- ``channel``, ``address``: where this message goes
- ``customer_id``
- ``campaign``: the campaign's name

A field the recipient has no value for is left out of the context, so using it raises
(``MissingField``) unless the template gives a default.

WhatsApp outside its 24-hour customer-service window takes only a provider-approved
template (``contracts.outbound.MessageTemplate``): a WhatsApp template may name one
(``approved``), with its body parameters written as jinja expressions over the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from channels.sms.segments import count_segments
from contracts import MAX_BODY_CHARS, Channel, MessageTemplate
from contracts.errors import InputError

__all__ = [
    "MAX_SMS_SEGMENTS",
    "RECIPIENT_FIELDS",
    "ApprovedTemplate",
    "ChannelTemplate",
    "CompiledTemplate",
    "MissingField",
    "Rendered",
    "TemplateProblem",
    "compile_template",
    "template_problems",
    "unknown_fields",
]

RECIPIENT_FIELDS = frozenset(
    {"name", "first_name", "tier", "language", "channel", "address", "customer_id", "campaign"}
)
# Twilio's advice (and its 1 600-character ceiling): longer SMS arrive out of order or not at all.
MAX_SMS_SEGMENTS = 10
# A body that short cannot exceed MAX_SMS_SEGMENTS whatever its characters: a UCS-2 segment
# holds 67 units, and no character takes more than two.
_SMS_SURELY_SHORT = MAX_SMS_SEGMENTS * 67 // 2

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
# No globals (range, lipsum, cycler, ...): a template sees the recipient's fields and nothing
# else, and jinja copies the globals into every render's context (a third of planning time).
_ENV.globals.clear()


class TemplateProblem(InputError):
    """A template that cannot be used as written; the reason names the channel and language."""


class MissingField(InputError):
    """Rendering for one recipient used a field the recipient has no value for."""


@dataclass(frozen=True)
class ApprovedTemplate:
    """A WhatsApp template the provider approved: its name, language and the jinja
    expressions of its body parameters ``{{1}}``, ``{{2}}``, … in order."""

    name: str
    language: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelTemplate:
    channel: str
    language: str
    body: str = ""
    subject: str | None = None  # e-mail only
    approved: ApprovedTemplate | None = None  # WhatsApp only

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.language}"

    def as_dict(self) -> dict[str, Any]:
        """As stored in the campaign's events (plain JSON data)."""
        approved = self.approved
        return {
            "channel": self.channel,
            "language": self.language,
            "body": self.body,
            "subject": self.subject,
            "approved": None
            if approved is None
            else {
                "name": approved.name,
                "language": approved.language,
                "parameters": list(approved.parameters),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelTemplate:
        approved = data.get("approved")
        return cls(
            channel=data["channel"],
            language=data["language"],
            body=data.get("body") or "",
            subject=data.get("subject"),
            approved=None
            if not approved
            else ApprovedTemplate(
                name=approved["name"],
                language=approved["language"],
                parameters=tuple(approved.get("parameters") or ()),
            ),
        )


def _sources(template: ChannelTemplate) -> list[tuple[str, str]]:
    """Each jinja source of the template with what it is called in an error."""
    sources = [("body", template.body)]
    if template.subject is not None:
        sources.append(("subject", template.subject))
    if template.approved is not None:
        sources += [
            (f"parameter {i}", "{{ " + expression + " }}")
            for i, expression in enumerate(template.approved.parameters, start=1)
        ]
    return sources


def unknown_fields(template: ChannelTemplate) -> list[str]:
    """The fields the template uses that no recipient has (sorted); syntax errors raise
    ``TemplateProblem``."""
    used: set[str] = set()
    for part, source in _sources(template):
        try:
            used |= meta.find_undeclared_variables(_ENV.parse(source))
        except TemplateSyntaxError as e:
            raise TemplateProblem(
                f"the {template.channel} template ({template.language}): {part}, line "
                f"{e.lineno}: {e.message}"
            ) from None
    return sorted(used - RECIPIENT_FIELDS)


def template_problems(template: ChannelTemplate) -> list[str]:
    """Why the template cannot be used as written (empty when it can)."""
    where = f"the {template.channel} template ({template.language})"
    try:
        unknown = unknown_fields(template)
    except TemplateProblem as e:
        return [e.reason]
    problems = []
    if unknown:
        problems.append(
            f"{where} uses unknown field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(RECIPIENT_FIELDS))}"
        )
    if not template.body and template.approved is None:
        problems.append(f"{where} has neither a body nor an approved template")
    if template.subject is not None and template.channel != Channel.email:
        problems.append(f"{where} has a subject, but only e-mail has subjects")
    if template.approved is not None and template.channel != Channel.whatsapp:
        problems.append(f"{where} names an approved template, but only WhatsApp has those")
    if template.approved is not None:
        try:
            MessageTemplate(name=template.approved.name, language=template.approved.language)
        except ValueError as e:
            problems.append(f"{where}: approved template {template.approved.name!r}: {e}")
    return problems


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None
    template: MessageTemplate | None = None


@dataclass
class CompiledTemplate:
    """A template parsed once, rendered for many recipients."""

    template: ChannelTemplate
    _body: Any = field(repr=False)
    _subject: Any = field(repr=False)
    _parameters: tuple[Any, ...] = field(repr=False)
    # The fields the template uses: a render depends on their values only, so recipients
    # with the same values (the same first name, say) share one render.
    _used: tuple[str, ...] = ()
    _renders: dict[tuple[Any, ...], Rendered] = field(default_factory=dict, repr=False)

    @property
    def has_body(self) -> bool:
        """Whether it has free text (a WhatsApp template may have only its approved one)."""
        return self._body is not None

    def render(self, fields: Mapping[str, str], *, approved: bool = False) -> Rendered:
        """The message for one recipient: free text, or (``approved``) the approved
        template with its parameters.  Raises ``MissingField`` or ``TemplateProblem``."""
        key = (approved, *(fields.get(name, _ABSENT) for name in self._used))
        found = self._renders.get(key)
        if found is None:
            found = self._render_for(fields, approved=approved)
            if len(self._renders) >= _RENDERS_KEPT:
                self._renders.clear()
            self._renders[key] = found
        return found

    def _render_for(self, fields: Mapping[str, str], *, approved: bool) -> Rendered:
        t = self.template
        try:
            if approved:
                if t.approved is None:
                    raise TemplateProblem(
                        f"the {t.channel} template ({t.language}) names no approved template"
                    )
                params = [_render(p, fields) for p in self._parameters]
                return Rendered(
                    body="",
                    template=MessageTemplate(
                        name=t.approved.name, language=t.approved.language, parameters=params
                    ),
                )
            if self._body is None:
                raise TemplateProblem(
                    f"the {t.channel} template ({t.language}) has no free-text body: only "
                    "its approved template can be sent"
                )
            body = _render(self._body, fields)
            subject = _render(self._subject, fields) if self._subject is not None else None
        except UndefinedError as e:
            raise MissingField(_missing(e)) from None
        except SecurityError as e:
            raise TemplateProblem(f"the {t.channel} template ({t.language}): {e}") from None
        if not body.strip():
            raise TemplateProblem(f"the {t.channel} template ({t.language}) renders empty")
        if len(body) > MAX_BODY_CHARS:
            raise TemplateProblem(
                f"the {t.channel} message would be {len(body)} characters (at most "
                f"{MAX_BODY_CHARS})"
            )
        if t.channel == Channel.sms and len(body) > _SMS_SURELY_SHORT:
            segments = count_segments(body).segments
            if segments > MAX_SMS_SEGMENTS:
                raise TemplateProblem(
                    f"the SMS would take {segments} segments (at most {MAX_SMS_SEGMENTS})"
                )
        return Rendered(body=body, subject=subject)


def _render(template: Any, fields: Mapping[str, str]) -> str:
    """``template.render(fields)`` with the fields as the context itself, not a copy."""
    return "".join(template.root_render_func(template.new_context(dict(fields), shared=True)))


def _missing(error: UndefinedError) -> str:
    # jinja's message: "'first_name' is undefined"
    text = str(error.message or error)
    name = text.split("'")[1] if text.count("'") >= 2 else text
    return f"missing template field {name!r}"


_ABSENT = object()
_RENDERS_KEPT = 50_000


def compile_template(template: ChannelTemplate) -> CompiledTemplate:
    """Parse once; raises ``TemplateProblem`` for a template with problems."""
    problems = template_problems(template)
    if problems:
        raise TemplateProblem("; ".join(problems))
    approved = template.approved
    sources = [template.body or "", template.subject or ""]
    sources += ["{{ " + p + " }}" for p in (approved.parameters if approved else ())]
    used = set().union(*(meta.find_undeclared_variables(_ENV.parse(x)) for x in sources))
    return CompiledTemplate(
        _used=tuple(sorted(used)),
        template=template,
        _body=_ENV.from_string(template.body) if template.body else None,
        _subject=_ENV.from_string(template.subject) if template.subject is not None else None,
        _parameters=tuple(
            _ENV.from_string("{{ " + p + " }}") for p in (approved.parameters if approved else ())
        ),
    )
