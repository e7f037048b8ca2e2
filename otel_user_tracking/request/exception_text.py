"""Exception text under the TagPolicy, before it leaves the process, and bounded in size.

An exception's message and stack trace say whatever the app put in them: SQLAlchemy's
``[parameters: ...]`` holds the submitted values, a validation error quotes the email, an
HTTP client's error the URL with its token. ``ExceptionText.clean`` rewrites such a text
the way the policy rewrites the span's attributes:

* the request's own user values (id, name, email, extra fields) become their policy form, or
  ``REDACTED`` where the policy drops them (``keep`` leaves them);
* any email address becomes its policy form unless ``email="keep"``;
* any IP address becomes its policy form (anonymized, or ``REDACTED``) unless ``ip="keep"``;
* values of sensitive ``key=value`` pairs (``scrub_query_keys``: ``password=``, URLs with
  ``?token=``), quoted pairs (``'password': 'x'``), ``Authorization: Bearer x`` and
  SQLAlchemy's ``[parameters: ...]`` become ``REDACTED``.

Then it is cut to a few KB (``_limits``). One ``ExceptionText`` is compiled per policy and
scrub words; it runs only when an exception (or an error status) is recorded.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import traceback
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import _limits
from ..policy import USER_FIELDS, TagPolicy
from .identity import UserInfo
from .scrubbing import _NOT_ALNUM, REDACTED, KeyMatcher

if TYPE_CHECKING:
    from ..config import Config

# Patterns start only where a word starts (the look-behinds) or at an "@", and their parts
# are bounded: on a long run of letters an unanchored pattern would retry at every position.
_EMAIL_DOMAIN = re.compile(r"@[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,16}")
_EMAIL_LOCAL_MAX = 256
# A key and its separator; the value is matched only after a sensitive key, so that a
# harmless "failed: password=x" does not swallow the pair that follows it.
_KEY_SEPARATOR = re.compile(
    r"(?<![\w.\-])(?P<key>[A-Za-z_][\w.\-]{0,127})(?P<closing>[\"']?)[ \t]*(?P<mark>[:=])[ \t]*"
)
_VALUE = re.compile(
    r"(?P<quote>[\"'])[^\"'\n]*(?P=quote)"
    r"|(?:(?i:bearer|basic|digest|token)[ \t]+)?[^\s&;,\"'<>()\[\]{}]+"
)
# An IPv4 address (a ":port" may follow, as in "10.0.0.5:5432") or an IPv6 one (with a
# zone, an embedded IPv4 tail, or in brackets); ``ipaddress`` decides what really is one.
_ADDRESS = re.compile(
    r"(?<![0-9A-Za-z.:])(?:"
    r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9A-Za-z.])"
    r"|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z.:])"
    r")"
)
# A message at least this long is cleaned once, for the message and the traceback's last line.
_REUSED_MESSAGE_CHARS = 32
_SQL_PARAMETERS = re.compile(r"^\[parameters: .*\]$", re.MULTILINE)
_SQL_PARAMETERS_REDACTED = f"[parameters: {REDACTED}]"
Replace = Callable[["re.Match[str]"], str]


class ExceptionText:
    """The text rules of one policy and one set of scrub words, compiled once.

    Usage: ``exception_text(config).attributes(exc, escaped=True, user=user)``. The rules of
    the last ``MAX_CACHED_USERS`` users (their values' pattern and policy forms) are kept.
    """

    MAX_CACHED_USERS = 256

    def __init__(self, policy: TagPolicy, scrub_words: Collection[str]) -> None:
        self.policy = policy
        self._sensitive = KeyMatcher(scrub_words)
        self._words = self._sensitive.words
        self._email = policy.email != "keep"
        self._ip: Optional[Replace] = None if policy.ip == "keep" else self._ip_form
        self._user_fields = tuple(field for field in USER_FIELDS if getattr(policy, field) != "keep")
        self._user_rules: dict[UserInfo, tuple[Optional[re.Pattern[str]], dict[str, str]]] = {}

    def clean(self, text: str, user: Optional[UserInfo] = None) -> str:
        """``text`` with people's values in their policy form and secrets ``REDACTED`` (no cap)."""
        if self._words:
            if "[parameters: " in text:
                text = _SQL_PARAMETERS.sub(_SQL_PARAMETERS_REDACTED, text)
            if ":" in text or "=" in text:
                text = self._without_secrets(text)
        if user is not None:
            text = self._without_user_values(text, user)
        if self._email and "@" in text:
            text = self._without_emails(text)
        if self._ip is not None and ("." in text or ":" in text):
            text = _ADDRESS.sub(self._ip, text)
        return text

    def message(self, text: str, user: Optional[UserInfo] = None) -> str:
        """An exception message: cleaned, at most ``MAX_EXCEPTION_MESSAGE_CHARS`` (and a marker)."""
        return self._bounded(text, user, _limits.MAX_EXCEPTION_MESSAGE_CHARS, "exception.message")

    def description(self, text: str, user: Optional[UserInfo] = None) -> str:
        """A span status description (``"ValueError: <message>"``): cleaned and bounded."""
        return self._bounded(text, user, _limits.MAX_STATUS_DESCRIPTION_CHARS, "status.description")

    def stacktrace(
        self, text: str, user: Optional[UserInfo] = None, message: tuple[str, str] = ("", "")
    ) -> str:
        """A formatted traceback: cleaned; beyond ``MAX_EXCEPTION_STACKTRACE_CHARS``, its start
        and its end (the innermost frames and the message) around a marker.

        ``message`` is the exception's raw message and its cleaned form: the traceback ends
        with that message, which is then not cleaned twice.
        """
        limit = _limits.MAX_EXCEPTION_STACKTRACE_CHARS
        if len(text) <= limit:
            raw, cleaned = message
            at = text.rfind(raw) if len(raw) >= _REUSED_MESSAGE_CHARS else -1
            end = at + len(raw)
            if at > 0 and text[at - 1] == " " and (end == len(text) or text[end].isspace()):
                head, tail = self.clean(text[:at], user), self.clean(text[end:], user)
                return _limits.cut(head + cleaned + tail, limit, "exception.stacktrace")
            return _limits.cut(self.clean(text, user), limit, "exception.stacktrace")
        _limits.note_cut("exception.stacktrace")
        half, window = limit // 2, limit // 2 + _limits.MAX_WORD_CHARS
        first = _limits.head(self.clean(text[:window], user), half)
        last = _limits.tail(self.clean(text[len(text) - window :], user), half)
        return f"{first}\n{_limits.marker(len(text) - 2 * half)}\n{last}"

    def attributes(self, exc: BaseException, *, escaped: bool, user: Optional[UserInfo]) -> dict[str, str]:
        """The ``exception.*`` attributes of ``exc`` (as the SDK names them), under the policy."""
        kind = type(exc)
        module, name = kind.__module__, kind.__qualname__
        exception_type = f"{module}.{name}" if module and module != "builtins" else name
        try:
            message = str(exc)
        except Exception:  # the app's __str__
            message = f"<{name}: str() failed>"
        try:
            stacktrace = "".join(traceback.format_exception(kind, exc, exc.__traceback__))
        except Exception:
            stacktrace = ""
        cleaned = self.message(message, user)
        return {
            "exception.type": _limits.cut(exception_type, _limits.MAX_EXCEPTION_TYPE_CHARS, "exception.type"),
            "exception.message": cleaned,
            "exception.stacktrace": self.stacktrace(stacktrace, user, (message, cleaned)),
            "exception.escaped": str(escaped),
        }

    def _bounded(self, text: str, user: Optional[UserInfo], limit: int, kind: str) -> str:
        """Cleaned, then cut. A long text is cleaned only as far as a value that starts before
        the cut can reach, and the cut drops a partial last word."""
        if len(text) <= limit:
            return _limits.cut(self.clean(text, user), limit, kind)
        _limits.note_cut(kind)
        kept = _limits.head(self.clean(text[: limit + _limits.MAX_WORD_CHARS], user), limit)
        return kept + _limits.marker(len(text) - len(kept))

    def _without_user_values(self, text: str, user: UserInfo) -> str:
        rules = self._user_rules.get(user)
        if rules is None:
            rules = self._compile_user(user)
            if len(self._user_rules) >= self.MAX_CACHED_USERS:
                self._user_rules.clear()
            self._user_rules[user] = rules
        pattern, forms = rules
        if pattern is None:
            return text
        return pattern.sub(lambda match: forms[match.group(0).lower()], text)

    def _compile_user(self, user: UserInfo) -> tuple[Optional[re.Pattern[str]], dict[str, str]]:
        forms: dict[str, str] = {}
        choices = []
        values: list[tuple[str, Any, Callable[[str, str], Optional[str]]]] = [
            (field, getattr(user, field), self.policy.apply) for field in self._user_fields
        ]
        values += [
            (name, str(raw), self._apply_extra)
            for name, raw in user.extra
            if not isinstance(raw, bool) and self.policy.extra_mode(name) != "keep"
        ]
        for field, raw, apply in values:
            if raw and raw.lower() not in forms:
                forms[raw.lower()] = apply(field, raw) or REDACTED
                # A numeric id leaves the traceback's "line 42" alone.
                choices.append(("(?<!line )" if raw.isdigit() else "") + re.escape(raw))
        if not choices:
            return None, forms
        # Whole values only, the longest first; one pass for all of them.
        choices.sort(key=len, reverse=True)
        pattern = re.compile(rf"(?<![\w.@+\-])(?:{'|'.join(choices)})(?![\w@\-])", re.IGNORECASE)
        return pattern, forms

    def _apply_extra(self, name: str, raw: str) -> Optional[str]:
        exported = self.policy.apply_extra(name, raw)
        return None if exported is None else str(exported)

    def _without_emails(self, text: str) -> str:
        parts = []
        done = 0
        for domain in _EMAIL_DOMAIN.finditer(text):
            at = start = domain.start()
            floor = max(done, at - _EMAIL_LOCAL_MAX)
            while start > floor and (text[start - 1].isalnum() or text[start - 1] in "._%+-"):
                start -= 1
            if start == at:
                continue
            parts.append(text[done:start])
            parts.append(self.policy.apply_email(text[start : domain.end()]) or REDACTED)
            done = domain.end()
        return "".join(parts) + text[done:] if parts else text

    def _without_secrets(self, text: str) -> str:
        parts = []
        done = 0
        for pair in _KEY_SEPARATOR.finditer(text):
            if pair.start() < done or not self._is_secret(pair):
                continue
            value = _VALUE.match(text, pair.end())
            if value is None:
                continue
            quote = value.group("quote") or ""
            parts.append(text[done : pair.end()])
            parts.append(f"{quote}{REDACTED}{quote}")
            done = value.end()
        return "".join(parts) + text[done:] if parts else text

    def _is_secret(self, pair: re.Match[str]) -> bool:
        key = pair.group("key")
        if pair.group("mark") == ":" and not pair.group("closing"):
            # "Name: value" is also how errors print ("KeyError: 'x'"): only a whole scrub word counts.
            return _NOT_ALNUM.sub("", key.lower()) in self._words
        return self._sensitive(key)

    def _ip_form(self, match: re.Match[str]) -> str:
        text = match.group(0)
        try:
            ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return text
        return self.policy.apply_ip(text.split("%", 1)[0]) or REDACTED


@functools.lru_cache(maxsize=16)
def _compiled(policy: TagPolicy, scrub_words: frozenset[str]) -> ExceptionText:
    return ExceptionText(policy, scrub_words)


def exception_text(config: Config) -> ExceptionText:
    """The ``ExceptionText`` of ``config``'s policy and scrub words (compiled once for both)."""
    return _compiled(config.tag_policy, config.scrub_query_keys)
