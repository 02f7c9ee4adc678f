"""The inbound routing configuration: queues and their hours, agents, and the rules that pick a
queue (docs/routing.md; deploy/routing.example.yaml).

People write it in YAML, so a mistake is reported where they will look for it: ``routing.yaml:14:
queues.support.hours.mon: '8:00-25:00' is not a time range HH:MM-HH:MM``.  The file is composed
into YAML nodes (which know their lines), validated by the models below, and each error's
location is walked back through the nodes to a line.  Every model forbids unknown keys: a typo is
an error, never a setting silently ignored.
"""

from __future__ import annotations

import difflib
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.addresses import parse_any_address
from contracts.enums import Channel
from contracts.errors import ConfigError

CHANNELS = tuple(c.value for c in Channel)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_CAPACITY = {"voice": 1, "sms": 3, "whatsapp": 3, "messenger": 3, "telegram": 3, "email": 5}
_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_DEFER_REFERENCES = "defer_references"
Loc = tuple[str | int, ...]


class RoutingConfigError(ConfigError):
    """The routing file cannot be used; ``problems`` has one ``file:line: field: message`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# -- values people write -------------------------------------------------------------------


def days_of(spec: str) -> tuple[int, ...]:
    """The weekdays (0 is Monday) a key of ``hours`` names: ``mon``, ``mon-fri``, ``fri-mon``
    (a range may wrap past Sunday) or ``daily``."""
    text = spec.strip().lower()
    if text == "daily":
        return tuple(range(7))
    first, dash, last = text.partition("-")
    if first not in DAYS or (dash and last not in DAYS):
        raise ValueError(f"{spec!r} is not a day or a range of days (mon … sun, mon-fri, daily)")
    start = DAYS.index(first)
    length = (DAYS.index(last) - start) % 7 + 1 if dash else 1
    return tuple((start + i) % 7 for i in range(length))


def minutes_of(span: str) -> tuple[int, int]:
    """``"08:00-20:00"`` as minutes since midnight, ``(480, 1200)``.  The end may be ``24:00``;
    an end at or before the start runs past midnight into the next day (``22:00-06:00``)."""
    match = _RANGE.fullmatch(span.strip())
    if match:
        h1, m1, h2, m2 = map(int, match.groups())
    if not match or h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"{span!r} is not a time range HH:MM-HH:MM")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"{span!r} is empty (for the whole day write 00:00-24:00)")
    return start, end


def _day_spec(spec: str) -> str:
    days_of(spec)
    return spec  # as written: "Mon" next to "mon" is a day given twice, reported as such


def _time_range(span: str) -> str:
    start, end = minutes_of(span)
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def _one_or_many(value: Any) -> Any:
    """A single value where a list is expected is a list of one (``languages: en``)."""
    if value is None:
        raise ValueError("give a value or a list of values (leave the key out for none)")
    return [value] if isinstance(value, str | int | float | date) else value


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not an IANA time zone (such as Europe/Berlin)") from None
    return name


def _language(code: str) -> str:
    if not re.fullmatch(r"[a-z]{2}", code):
        raise ValueError(
            f"{code!r} is not a language code: two lowercase letters (ISO 639-1), such as en or de"
        )
    return code


def _channel(name: str) -> str:
    if name not in CHANNELS:
        raise ValueError(f"{name!r} is not a channel ({', '.join(CHANNELS)})")
    return name


def _address(raw: str) -> str:
    # parse_any_address raises AddressError, a ValueError naming the input and the reason.
    return parse_any_address(raw)


Listed = BeforeValidator(_one_or_many)
Language = Annotated[str, AfterValidator(_language)]
ChannelName = Annotated[str, AfterValidator(_channel)]
Names = Annotated[list[str], Listed]
Spans = Annotated[list[Annotated[str, AfterValidator(_time_range)]], Listed]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- the file's parts ----------------------------------------------------------------------


class Destination(_Model):
    """Where contacts go instead of a queue's agents: exactly one of ``voicemail: true``,
    ``callback: true`` or a queue (``queue`` after hours, ``to_queue`` on overflow)."""

    voicemail: bool = False
    callback: bool = False

    @property
    def next_queue(self) -> str | None:
        return None

    @property
    def kind(self) -> Literal["voicemail", "callback", "queue"]:
        if self.voicemail:
            return "voicemail"
        return "callback" if self.callback else "queue"

    @model_validator(mode="after")
    def _exactly_one(self) -> Destination:
        given = [self.voicemail, self.callback, self.next_queue is not None]
        if sum(given) != 1:
            other = "to_queue" if isinstance(self, Overflow) else "queue"
            raise ValueError(
                f"give exactly one of voicemail: true, callback: true or {other}: NAME"
            )
        return self

    def shown(self) -> str:
        return f"queue {self.next_queue}" if self.next_queue else self.kind


class AfterHours(Destination):
    queue: str | None = Field(None, description="the queue that takes over while this is closed")

    @property
    def next_queue(self) -> str | None:
        return self.queue


class Overflow(Destination):
    after_s: float = Field(ge=0, description="seconds waited in this queue before overflowing")
    to_queue: str | None = Field(None, description="the queue that takes the waiting contact")

    @property
    def next_queue(self) -> str | None:
        return self.to_queue


class Queue(_Model):
    time_zone: Annotated[str, AfterValidator(_time_zone)] | None = Field(
        None, description="IANA zone of the hours and holidays", examples=["Europe/Berlin"]
    )
    hours: dict[Annotated[str, AfterValidator(_day_spec)], Spans] | None = Field(
        None, description="day or days → HH:MM-HH:MM range(s); left out: open 24/7"
    )
    holidays: Annotated[list[date], Listed] = Field([], description="closed all day")
    skills: Names = Field([], description="an agent needs all of these to take its contacts")
    languages: Annotated[list[Language], Listed] = Field([], description="languages it serves")
    after_hours: AfterHours = Field(AfterHours(voicemail=True), description="where to, closed")
    overflow: Overflow | None = None
    channels: Annotated[list[ChannelName], Listed] | None = Field(None, description="default: all")
    # Per weekday (0 is Monday), the ranges starting that day in minutes; None: open 24/7.
    _week: tuple[tuple[tuple[int, int], ...], ...] | None = PrivateAttr(None)

    def model_post_init(self, context: Any) -> None:
        if self.hours is not None:
            week: list[list[tuple[int, int]]] = [[] for _ in DAYS]
            for spec, spans in self.hours.items():
                for day in days_of(spec):
                    week[day].extend(minutes_of(span) for span in spans)
            self._week = tuple(tuple(day) for day in week)

    def takes(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels

    def local(self, at: datetime) -> datetime:
        return at.astimezone(ZoneInfo(self.time_zone)) if self.time_zone else at

    def closed_because(self, at: datetime) -> Literal["holiday", "after-hours"] | None:
        """Why the queue is closed at the aware time ``at``, or None when it is open.

        Hours are wall-clock times in the queue's zone, so 08:00 is 07:00 UTC in winter and
        06:00 UTC in summer.  A holiday closes its whole local day, a night range starting on
        it included.
        """
        local = self.local(at)
        if local.date() in self.holidays:
            return "holiday"
        if self._week is None:
            return None
        day, minute = local.weekday(), local.hour * 60 + local.minute
        for start, end in self._week[day]:
            if start <= minute < end or (end <= start <= minute):
                return None
        if local.date() - timedelta(days=1) not in self.holidays:
            for start, end in self._week[(day - 1) % 7]:
                if end <= start and minute < end:
                    return None
        return "after-hours"

    def hours_shown(self) -> str:
        if self.hours is None:
            return "24/7"
        return ", ".join(f"{spec.title()} {' '.join(spans)}" for spec, spans in self.hours.items())


class Agent(_Model):
    queues: Names = Field([], description="the queues whose contacts the agent takes")
    skills: Names = []
    languages: Annotated[list[Language], Listed] = []
    capacity: dict[ChannelName, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_CAPACITY),
        description="contacts held at once per channel; channels left out keep the default",
    )

    @field_validator("capacity", mode="after")
    @classmethod
    def _with_defaults(cls, given: dict[str, int]) -> dict[str, int]:
        return {**DEFAULT_CAPACITY, **given}


class Conditions(_Model):
    """All the conditions given must hold; within one, any of the values will do."""

    tier: Names | None = None
    language: Annotated[list[Language], Listed] | None = None
    channel: Annotated[list[ChannelName], Listed] | None = None
    dialled: Annotated[list[Annotated[str, AfterValidator(_address)]], Listed] | None = None
    tags: Names | None = None


class Rule(_Model):
    name: str | None = None
    when: Conditions
    queue: str


class RoutingConfig(_Model):
    default_queue: str = Field(description="where a contact goes when nothing else decides")
    last_agent_hours: float = Field(72, ge=0, description="last-agent affinity window; 0: off")
    offer_timeout_s: float = Field(20, gt=0, description="how long an offer rings an agent")
    message_offer_timeout_s: float = Field(
        0,
        ge=0,
        le=86_400,
        description="messages and e-mails: how long an agent has to accept one offered to "
        "them before it goes to the next; 0: given to the agent at once",
    )
    queues: dict[str, Annotated[Queue, BeforeValidator(lambda v: {} if v is None else v)]]
    agents: dict[str, Agent] = {}
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _references_hold(self, info: ValidationInfo) -> RoutingConfig:
        if not (info.context or {}).get(_DEFER_REFERENCES):
            problems = reference_problems(self)
            if problems:
                raise ValueError("; ".join(f"{_field(loc)}: {msg}" for loc, msg in problems))
        return self

    def rule_name(self, index: int) -> str:
        return self.rules[index].name or f"rule {index + 1}"

    def serves(self, agent: str) -> list[str]:
        """The queues ``agent`` takes contacts of (none for an agent not configured)."""
        found = self.agents.get(agent)
        return list(found.queues) if found else []

    def agents_of(self, queue: str) -> list[str]:
        """The agents who take the contacts of ``queue``, in the file's order."""
        return [name for name, agent in self.agents.items() if queue in agent.queues]

    def capacity(self, agent: str, channel: str) -> int:
        """How many contacts of ``channel`` the agent holds at once (0: not an agent here)."""
        found = self.agents.get(agent)
        return 0 if found is None else found.capacity.get(channel, 0)

    def queue_is_open(self, queue: str, at: datetime) -> bool:
        return self.queues[queue].closed_because(at) is None

    def warnings(self) -> list[str]:
        """What is allowed but probably not meant: queues whose contacts nobody can take."""
        found = []
        for name, queue in self.queues.items():
            serving = [self.agents[a] for a in self.agents_of(name)]
            able = [a for a in serving if set(queue.skills) <= set(a.skills)]
            if not serving:
                found.append(f"queues.{name}: no agent serves it; its contacts wait there")
            elif not able:
                found.append(
                    f"queues.{name}: no agent serving it has the skills {', '.join(queue.skills)}"
                )
        return found


# -- checks across the file ------------------------------------------------------------------


def reference_problems(config: RoutingConfig) -> list[tuple[Loc, str]]:
    """What only the whole file can tell: queues named but not defined, hours given twice for a
    day, a zone missing, and chains of after-hours and overflow queues that go round."""
    queues = config.queues
    known = ", ".join(queues)
    problems: list[tuple[Loc, str]] = []

    def need(loc: Loc, name: str) -> None:
        if name not in queues:
            problems.append((loc, f"no queue {name!r} is defined (queues: {known})"))

    need(("default_queue",), config.default_queue)
    for i, rule in enumerate(config.rules):
        need(("rules", i, "queue"), rule.queue)
    for name, agent in config.agents.items():
        for i, queue in enumerate(agent.queues):
            need(("agents", name, "queues", i), queue)
    for name, queue in queues.items():
        if queue.after_hours.queue is not None:
            need(("queues", name, "after_hours", "queue"), queue.after_hours.queue)
        if queue.overflow is not None and queue.overflow.to_queue is not None:
            need(("queues", name, "overflow", "to_queue"), queue.overflow.to_queue)
        if queue.time_zone is None and (queue.hours or queue.holidays):
            problems.append(
                (("queues", name, "time_zone"), "required when hours or holidays are given")
            )
        problems.extend(_hours_problems(("queues", name, "hours"), queue.hours))
    problems.extend(_loops(queues))
    return problems


def _hours_problems(loc: Loc, hours: dict[str, list[str]] | None) -> list[tuple[Loc, str]]:
    if hours is None:
        return []
    if not hours:
        return [(loc, "no day is open (leave hours out for a queue open 24/7)")]
    problems: list[tuple[Loc, str]] = []
    given: dict[int, str] = {}
    for spec in hours:
        for day in days_of(spec):
            if day in given:
                problems.append(((*loc, spec), f"{DAYS[day]} is given by {given[day]} already"))
                break
            given[day] = spec
    return problems


def _loops(queues: dict[str, Queue]) -> list[tuple[Loc, str]]:
    """Chains of after-hours and overflow queues that lead back to where they started: a
    contact could go round them forever (when every queue on the loop is closed, say)."""
    edges: dict[str, list[tuple[str, Loc]]] = {}
    for name, queue in queues.items():
        if queue.after_hours.queue in queues:
            edges.setdefault(name, []).append(
                (queue.after_hours.queue, ("queues", name, "after_hours", "queue"))
            )
        if queue.overflow is not None and queue.overflow.to_queue in queues:
            edges.setdefault(name, []).append(
                (queue.overflow.to_queue, ("queues", name, "overflow", "to_queue"))
            )
    problems: list[tuple[Loc, str]] = []
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        path.append(name)
        for target, loc in edges.get(name, []):
            if target in path:
                loop = " → ".join([*path[path.index(target) :], target])
                problems.append(
                    (loc, f"{loop} goes round forever; end the chain in voicemail or callback")
                )
            elif target not in done:
                walk(target, path)
        path.pop()
        done.add(name)

    for name in queues:
        if name not in done:
            walk(name, [])
    return problems


# -- the file --------------------------------------------------------------------------------


_BOOL, _INT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"


class _Loader(yaml.SafeLoader):
    """YAML as people mean it here: only true/false are booleans (``languages: [no]`` is
    Norwegian, not false) and ``+4930…`` stays a phone number rather than becoming an int."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(_INT, re.compile(r"^(?:-?(?:0|[1-9][0-9]*))$"), list("-0123456789"))


def load_routing_config(path: Path) -> RoutingConfig:
    """The routing configuration in the file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RoutingConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise RoutingConfigError([f"{path}: cannot be read ({reason})"]) from None
    return parse_routing_config(text, source=str(path))


def parse_routing_config(text: str, *, source: str = "routing.yaml") -> RoutingConfig:
    """The routing configuration written in ``text``; ``source`` names it in the problems."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise RoutingConfigError([f"{source}:1: the file is empty (see docs/routing.md)"])
        # Before constructing: merge keys (<<: *defaults) are flattened into the nodes then.
        twice = _duplicate_keys(root, ())
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RoutingConfigError([f"{source}:{line}: not valid YAML: {e.problem}"]) from None
    finally:
        loader.dispose()
    problems = [(line, f"{source}:{line}: {msg}") for line, msg in twice]
    try:
        config = RoutingConfig.model_validate(data, context={_DEFER_REFERENCES: True})
    except ValidationError as e:
        found = [(tuple(err["loc"]), _message(err)) for err in e.errors()]
    else:
        found = reference_problems(config)
    for loc, msg in found:
        line, field = _located(root, loc)
        problems.append((line, f"{source}:{line}: {field + ': ' if field else ''}{msg}"))
    if problems:
        ordered = sorted(dict.fromkeys(problems), key=lambda p: p[0])
        raise RoutingConfigError([p for _, p in ordered])
    return config


def _duplicate_keys(node: yaml.Node, path: Loc, seen: set[int] | None = None) -> list:
    """Keys given twice in one mapping (PyYAML would keep the last one without a word)."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: already checked where its anchor is
        return []
    seen.add(id(node))
    found = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            if name in first:
                where = _field((*path, name))
                found.append(
                    (key.start_mark.line + 1, f"{where}: given twice (first on line {first[name]})")
                )
            first.setdefault(name, key.start_mark.line + 1)
            found.extend(_duplicate_keys(value, (*path, name), seen))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.extend(_duplicate_keys(item, (*path, i), seen))
    return found


def _located(root: yaml.Node, loc: Loc) -> tuple[int, str]:
    """The line of the deepest node ``loc`` reaches (a mapping value: the line of its key), and
    the field named by the parts of ``loc`` that mean something in the file."""
    node, line, shown = root, root.start_mark.line + 1, []
    for i, part in enumerate(loc):
        if part == "[key]":  # the error is about the key itself, found as the last part
            continue
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):  # PyYAML keeps the last of duplicates
                if str(key.value) == str(part):
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                child = node.value[part]
                line = child.start_mark.line + 1
        if child is None:
            # Not in the file: a missing key is named; an index of a value that was given as
            # one item (``languages: en``) is not.
            shown.extend(p for p in loc[i:] if isinstance(p, str) and p != "[key]")
            break
        node = child
        shown.append(part)
    return line, _field(tuple(shown))


def _field(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return text


_FIELDS = sorted(
    {
        f
        for model in (RoutingConfig, Queue, Agent, Rule, Conditions, AfterHours, Overflow)
        for f in model.model_fields
    }
)


def _message(error: Any) -> str:
    """Pydantic's message, said for someone editing the file."""
    kind, value = error["type"], error.get("input")
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "model_type" and not error["loc"]:
        return "the file must be a mapping with default_queue, queues, agents and rules"
    if kind == "missing":
        return "required, missing"
    if kind == "extra_forbidden":
        unknown = str(error["loc"][-1])
        close = difflib.get_close_matches(unknown, _FIELDS, n=1)
        return "unknown key" + (f" (did you mean {close[0]}?)" if close else "")
    if isinstance(value, str | int | float | bool | date) or value is None:
        return f"{error['msg']} (got {value!r})"
    return str(error["msg"])
