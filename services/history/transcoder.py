"""The library's JSON event format, encoded and decoded with orjson.

``eventsourcing.JSONTranscoder`` writes an event's state as JSON in which a value of a
registered type (UUID, datetime, Decimal, ...) becomes ``{"_type_": name, "_data_": ...}``;
it uses the standard ``json`` module with a Python ``default`` and ``object_hook`` called
for every such value and every object.  Profiled on ingest and on a rebuild, that JSON work
was a tenth of recording an interaction and two fifths of decoding a stored event.

``OrjsonTranscoder`` writes and reads **the same format**: registered types are tagged in one
pass over the state in Python, the text is made and parsed by orjson, and tagged objects are
turned back in one pass.  So stores written before read as they did, and either transcoder
reads what the other wrote (tests/unit/test_transcoder.py checks both ways on generated
states).  Anything orjson does differently from ``json`` — integers beyond 64 bits, keys that
are not strings, NaN and infinities, a type only the library's fallback knows — is handed
to the library's own path, whole, so the result never differs.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder

__all__ = ["OrjsonTranscoder"]

# orjson reads an integer beyond 64 bits as a float, json as an int: a float this big (or
# an infinity) may have been such an integer, so the library's path reads that text again.
_BIG = 2.0**63


class _Unsupported(Exception):
    """A value orjson would encode otherwise than ``json``: the library's path encodes it."""


class OrjsonTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(self._tag(obj))
        except (_Unsupported, orjson.JSONEncodeError, TypeError, OverflowError):
            return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return super().decode(data)
        try:
            return self._untag(parsed)
        except _Unsupported:
            return super().decode(data)

    # -- one pass each way ------------------------------------------------------------------

    def _tag(self, o: Any) -> Any:
        t = type(o)
        if t is str or t is int or t is bool or o is None:
            return o
        if t is dict:
            out = {}
            for k, v in o.items():
                if type(k) is not str:
                    raise _Unsupported  # json turns int/float/bool keys into strings
                out[k] = self._value(v)
            return out
        if t is list or t is tuple:
            return [self._value(v) for v in o]
        return self._other(o, t)

    def _value(self, v: Any) -> Any:
        """``_tag`` of a value inside a dict or list, the common ones without another call."""
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            return v
        transcoding = self.types.get(t)
        if transcoding is not None:
            if t is datetime and type(transcoding) is DatetimeAsISO:
                tz = v.tzinfo
                if tz is UTC or tz is None:
                    # orjson writes these exactly as isoformat() does, in C (an offset with
                    # seconds it would round: that goes the library's way below).
                    return {"_type_": transcoding.name, "_data_": v}
            data = transcoding.encode(v)
            if type(data) is not str:
                data = self._tag(data)
            return {"_type_": transcoding.name, "_data_": data}
        if (t is list or t is dict) and not v:
            return [] if t is list else {}
        return self._tag(v)

    def _other(self, o: Any, t: type) -> Any:
        if t is float:
            if not math.isfinite(o):
                raise _Unsupported  # json writes NaN/Infinity, orjson null
            return o
        transcoding = self.types.get(t)
        if transcoding is not None:
            return {"_type_": transcoding.name, "_data_": self._tag(transcoding.encode(o))}
        # Subclasses of str/int/float (enums) have json's own ways; an unregistered type
        # gets the library's own error.
        raise _Unsupported

    def _untag(self, o: Any) -> Any:
        t = type(o)
        if t is dict:
            for k, v in o.items():
                tv = type(v)
                if tv is dict:
                    # A tagged value holding a string (a time, an id: nearly every one)
                    # turned back without the call that would find nothing else in it.
                    if (
                        len(v) == 2
                        and type(data := v.get("_data_")) is str
                        and type(name := v.get("_type_")) is str
                    ):
                        transcoding = self.names.get(name)
                        o[k] = (
                            self._decode_obj(v)  # the library's error
                            if transcoding is None
                            else transcoding.decode(data)
                        )
                    else:
                        o[k] = self._untag(v)
                elif tv is list:
                    o[k] = self._untag(v)
                elif tv is float and not -_BIG < v < _BIG:
                    raise _Unsupported
            if len(o) == 2 and "_type_" in o and "_data_" in o:
                return self._decode_obj(o)
            return o
        if t is list:
            for i, v in enumerate(o):
                tv = type(v)
                if tv is dict or tv is list:
                    o[i] = self._untag(v)
                elif tv is float and not -_BIG < v < _BIG:
                    raise _Unsupported
        elif t is float and not -_BIG < o < _BIG:
            raise _Unsupported
        return o
